"""The console a person reads: stages, progress lines, results; everything else in the log file."""

import logging
import os
import warnings
from types import SimpleNamespace

import pytest
from jobs_in_process import restored_logging

from clintraj import console


@pytest.fixture
def restore_logging():
    """console.setup reconfigures this process's logging: put pytest's back afterwards."""
    with restored_logging():
        yield


def test_logs_and_warnings_go_to_the_file_and_the_console_shows_stages(tmp_path, capsys, restore_logging,
                                                                         monkeypatch):
    monkeypatch.delenv("RAY_DATA_LOGGING_CONFIG", raising=False)
    path = console.setup(tmp_path, "job")
    assert path.parent == tmp_path / "logs" and path.name.startswith("job-")
    logging.getLogger("clintraj.training").info("epoch 3 of 5")
    logging.getLogger("ray.tune").warning("a Ray warning")
    warnings.warn("a library's warning", UserWarning)
    os.write(2, b"core_worker.cc: a native warning\n")  # what Ray's C++ side writes, past sys.stderr
    with console.stage("eicu: pretraining") as notes:
        notes.append("test Recall@10 0.31")
    with pytest.raises(RuntimeError), console.stage("eicu: backbone sweep"):
        raise RuntimeError("boom")
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "eicu: pretraining ..."
    assert out.splitlines()[1].startswith("eicu: pretraining: done in ") and out.splitlines()[1].endswith(
        "; test Recall@10 0.31")
    assert out.splitlines()[3].startswith("eicu: backbone sweep: failed after ")
    assert "epoch 3 of 5" not in out + err and "Ray warning" not in out + err and "library's" not in out + err
    logged = path.read_text()
    assert all(text in logged for text in ("epoch 3 of 5", "a Ray warning", "a library's warning", "native warning",
                                           "eicu: pretraining: done in"))
    # Ray Data's driver-side logger is sent to the root logger, through the config Ray Data reads
    assert "propagate: true" in open(console.os.environ["RAY_DATA_LOGGING_CONFIG"]).read()


def test_ray_datas_logging_config_is_found_from_any_working_directory(tmp_path, restore_logging, monkeypatch):
    """The job's work folder is relative by default (clintraj-work); Tune runs each trial in a
    folder of its own, where Ray Data reads the config the path names."""
    monkeypatch.delenv("RAY_DATA_LOGGING_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    console.setup("clintraj-work", "job")
    monkeypatch.chdir(tmp_path / "clintraj-work")  # as a trial's process would, elsewhere
    config = console.os.environ["RAY_DATA_LOGGING_CONFIG"]
    assert os.path.isabs(config) and "propagate: true" in open(config).read()


def test_verbose_brings_the_logs_back_to_the_console(tmp_path, capsys, restore_logging):
    console.setup(tmp_path, "job", verbose=True)
    logging.getLogger("clintraj.training").info("epoch 3 of 5")
    assert "epoch 3 of 5" in capsys.readouterr().err and console.verbose()


def test_a_progress_line_prints_each_quarter_off_a_terminal(capsys, restore_logging):
    progress = console.Progress("eicu backbone sweep", 8, "trials")
    for done in range(1, 9):
        progress.update(done, f"best val_score 0.{done}")
    progress.close()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "  eicu backbone sweep: 2/8 trials", "  eicu backbone sweep: 4/8 trials", "  eicu backbone sweep: 6/8 trials",
        "  eicu backbone sweep: 8/8 trials"]
    assert "left" in lines[0] and "left" not in lines[-1] and lines[-1].endswith("best val_score 0.8")


def test_the_sweep_callback_counts_ended_trials_and_keeps_the_best():
    from clintraj.sweep_progress import SweepProgress

    callback = SweepProgress("mimic static baselines", 4, "val_score", "max")
    trials = [SimpleNamespace(status=s, config={"architecture": a, "initialisation": "scratch", "lr": 1e-3})
              for s, a in (("TERMINATED", "mlp"), ("ERROR", "lstm"), ("RUNNING", "mlp"), ("PENDING", "lstm"))]
    callback.on_trial_result(0, trials, trials[0], {"val_score": 0.61})
    callback.on_trial_result(0, trials, trials[2], {"val_score": 0.72})
    callback.on_trial_result(0, trials, trials[0], {"val_score": 0.65})
    callback.on_trial_complete(0, trials, trials[0])
    assert callback.progress.done == 2
    assert callback.progress.note == "best val_score 0.720 (mlp, scratch, 0.001), 1 failed"
