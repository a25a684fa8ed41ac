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
