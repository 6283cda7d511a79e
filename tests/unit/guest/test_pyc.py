"""Which .pyc the normalize stage writes again (bionic): packaged ones with their source beside them."""

from builder.guest.pyc import packaged_pycs


def touch(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_each_pyc_is_paired_with_its_source_interpreter_and_optimisation(tmp_path):
    lib = tmp_path / "usr/lib"
    touch(lib / "python3.6/netrc.py")
    touch(lib / "python3.6/__pycache__/netrc.cpython-36.pyc")
    touch(lib / "python3.6/__pycache__/netrc.cpython-36.opt-1.pyc")
    touch(lib / "python3/dist-packages/yaml/__init__.py")
    touch(lib / "python3/dist-packages/yaml/__pycache__/__init__.cpython-36.pyc")
    touch(lib / "python3/dist-packages/yaml/__pycache__/__init__.cpython-38.pyc")
    touch(lib / "python3.6/__pycache__/gone.cpython-36.pyc")      # no source: left alone
    touch(lib / "python3.6/__pycache__/notes.txt")                 # not a .pyc
    touch(tmp_path / "opt/venv/lib/python3.6/__pycache__/x.cpython-36.pyc")  # not packaged
    assert packaged_pycs(tmp_path) == {
        "/usr/bin/python3.6": [  # in name order, as the one compiling process takes them
            ("/usr/lib/python3/dist-packages/yaml/__init__.py",
             "/usr/lib/python3/dist-packages/yaml/__pycache__/__init__.cpython-36.pyc", 0),
            ("/usr/lib/python3.6/netrc.py", "/usr/lib/python3.6/__pycache__/netrc.cpython-36.opt-1.pyc", 1),
            ("/usr/lib/python3.6/netrc.py", "/usr/lib/python3.6/__pycache__/netrc.cpython-36.pyc", 0),
        ],
        "/usr/bin/python3.8": [
            ("/usr/lib/python3/dist-packages/yaml/__init__.py",
             "/usr/lib/python3/dist-packages/yaml/__pycache__/__init__.cpython-38.pyc", 0),
        ],
    }


def test_the_split_over_compiling_processes_depends_on_the_file_list_alone(monkeypatch):
    from builder.guest import pyc
    files = [f"/opt/venv/m{i:03}.py" for i in range(10)]
    shares = pyc.fixed_shares(files)
    assert [f for share in shares for f in share] == files, "every file once, in order"
    assert len(shares) == pyc.COMPILE_PROCESSES == 4 and [len(s) for s in shares] == [3, 3, 3, 1]
    monkeypatch.setattr("os.cpu_count", lambda: 64)  # another host: the same split
    assert pyc.fixed_shares(files) == shares
    assert pyc.fixed_shares([]) == [] and pyc.fixed_shares(files[:2]) == [[files[0]], [files[1]]]
