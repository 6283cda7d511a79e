from builder.guest.dockerapi import client_api_version, release


def test_release_reads_the_version_line_of_docker_and_dockerd():
    assert release("Docker version 29.1.3, build 29.1.3-0ubuntu3~24.04.2\n") == "29.1.3"
    assert release("Docker version 20.10.24+dfsg1, build 297e128\n") == "20.10.24+dfsg1"
    assert release("dockerd: command not found") is None
    assert release("") is None


def test_client_api_version_takes_a_version_or_nothing():
    # `docker version` prints the client's part, then says it cannot connect (on stderr)
    assert client_api_version("1.52\n") == "1.52"
    assert client_api_version("1.41") == "1.41"
    assert client_api_version("template: :1:9: executing \"\" at <.Client.APIVersion>\n") is None
    assert client_api_version("1.52-beta\n") is None
    assert client_api_version("") is None
