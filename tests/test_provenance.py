import json

from rl_select import provenance


def test_steal_share_is_measured_between_start_and_read(monkeypatch):
    readings = iter([(100, 1000), (150, 1200)])
    monkeypatch.setattr(provenance, "_cpu_times", lambda: next(readings))
    share = provenance.cpu_steal_meter()()
    assert share == 0.25
    text = provenance.provenance_markdown(provenance.provenance(cpu_steal_share=share))
    assert "(steal) during the run: 25.0%" in text


def test_steal_share_is_none_without_proc_stat(monkeypatch):
    monkeypatch.setattr(provenance, "_cpu_times", lambda: None)
    assert provenance.cpu_steal_meter()() is None
    assert "steal" not in provenance.provenance_markdown(provenance.provenance(cpu_steal_share=None))


def test_rewritten_results_do_not_make_the_source_tree_dirty(tmp_path, monkeypatch):
    import subprocess

    from rl_select.provenance import git_state

    monkeypatch.delenv("RL_SELECT_COMMIT", raising=False)

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "experiments" / "results").mkdir(parents=True)
    (tmp_path / "experiments" / "results" / "summary.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    assert git_state(tmp_path)[1] is False
    (tmp_path / "experiments" / "results" / "summary.json").write_text('{"rewritten": true}')
    assert git_state(tmp_path)[1] is False  # a study rewriting its own committed table
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path)[1] is True


def test_per_row_lists_stay_on_one_line_and_read_back_unchanged(tmp_path):
    payload = {
        "selections": [[3, 1, 4], [1, 5], []],
        "reports": [{"seed": 0, "predictions": [0, 1]}],
        "mixed": [1, [2]],
    }
    path = provenance.write_json(tmp_path / "log.json", payload)
    lines = path.read_text().splitlines()
    assert '  "selections": [[3, 1, 4], [1, 5], []],' in lines
    assert '  "mixed": [1, [2]]' in lines
    assert '      "predictions": [0, 1]' in lines  # objects in a list are still indented
    assert json.loads(path.read_text()) == payload
