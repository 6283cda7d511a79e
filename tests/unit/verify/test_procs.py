import socket

from builder.verify import procs


def ephemeral_low() -> int:
    return int(procs.EPHEMERAL_RANGE.read_text().split()[0])


def test_free_port_is_bindable_and_below_the_ephemeral_range():
    # outgoing connections never get it from the kernel between the pick and its use
    ports = {procs.free_port() for _ in range(20)}
    assert all(ephemeral_low() - procs.FREE_PORT_SPAN <= port < ephemeral_low() for port in ports), ports
    assert len(ports) > 1  # a random pick, so two test workers rarely want the same port
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports.pop()))


def test_free_port_skips_a_port_someone_listens_on(monkeypatch, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        # a span of one: the only candidate is taken, so the kernel's pick is used instead
        (tmp_path / "range").write_text(f"{busy + 1}\t60999\n")
        monkeypatch.setattr(procs, "EPHEMERAL_RANGE", tmp_path / "range")
        monkeypatch.setattr(procs, "FREE_PORT_SPAN", 1)
        assert procs.free_port() != busy
