"""SBOMs of a built image: SPDX 2.3 and CycloneDX 1.6, made from its manifest by the field's libraries."""
