"""Registration: a built image into Glance and a Trove datastore version (TROVE-GUEST-CONTRACT.md §5).

`plan` decides what the cloud should hold (from the manifest beside the image), `emit` prints it as the
guide's manual commands, `glance` and `trove` make it so through openstacksdk and python-troveclient,
and `run` ties them together so that a second run changes nothing.
"""
