"""results.json as a RunResult: written and read back whole, the file's shape kept for code that indexes it, and
older or damaged files handled (the report turns a damaged one into a note)."""

import json

import pytest

from cnnlab.models import results
from cnnlab.models.inference import Evaluation
from cnnlab.models.results import RunResult
from cnnlab.reports import facts


def a_result(**changes) -> RunResult:
    fields = dict(dataset="mnist", source="/data/mnist", verified=True, classes=["0", "1"], epochs_run=4,
                  stopped_early=True, stopped_epoch=4, weights="best epoch 2 restored",
                  validation="10% stratified hold-out", final={"loss": 0.5, "val_accuracy": 0.75},
                  test=Evaluation(0.25, 0.875, [0.75, 1.0], [[3, 1], [0, 4]]), threads=2, precision="fp32",
                  device="cpu", seconds_this_session=12.5)
    return RunResult(**{**fields, **changes})


def test_a_result_reads_back_as_it_was_written(tmp_path):
    written = a_result()
    results.write(tmp_path, written)
    read = results.read(tmp_path)
    assert read.test.accuracy == 0.875 and read.test.confusion == [[3, 1], [0, 4]] and read.stopped_epoch == 4
    assert read.to_dict() == written.to_dict()
    assert read.test.classes == ["0", "1"]  # the test score knows its classes, as run.evaluate()'s does


def test_indexing_reads_the_file_s_own_shape(tmp_path):
    results.write(tmp_path, a_result())
    on_disk = json.loads((tmp_path / results.FILENAME).read_text())
    result = results.read(tmp_path)
    assert result["test"] == on_disk["test"] and result["test"]["accuracy"] == result.test.accuracy
    assert result["weights"] == on_disk["weights"] == "best epoch 2 restored"
    with pytest.raises(KeyError):
        result["no such key"]


def test_no_file_is_none_and_a_run_without_a_test_set_has_no_test(tmp_path):
    assert results.read(tmp_path) is None
    results.write(tmp_path, a_result(test=None))
    assert results.read(tmp_path).test is None and results.read(tmp_path)["test"] is None


def test_an_older_file_without_the_later_keys_reads_and_unknown_keys_are_ignored(tmp_path):
    d = a_result().to_dict()
    for later in ("threads", "processes", "precision", "device", "seconds_this_session"):
        del d[later]
    d["a newer cnnlab's key"] = 1
    (tmp_path / results.FILENAME).write_text(json.dumps(d))
    r = results.read(tmp_path)
    assert r.device == "" and r.processes == 1 and r.test.accuracy == 0.875


@pytest.mark.parametrize("text, says", [
    ('{"dataset": "mnist"}', "it lacks source"),
    ("[1, 2]", "expected a JSON object"),
    ('{"test": {"loss": 1}}', "no loss and accuracy"),
    ("{not json", "Expecting property name"),
])
def test_a_damaged_file_is_one_value_error_naming_what_is_wrong(tmp_path, text, says):
    (tmp_path / results.FILENAME).write_text(text)
    with pytest.raises(ValueError, match=says):
        results.read(tmp_path)


def test_the_report_notes_a_damaged_results_file_and_goes_on(tmp_path):
    (tmp_path / "config.toml").write_text('preset = "mlp"\n')
    (tmp_path / "metrics.csv").write_text("epoch,loss,accuracy,val_loss,val_accuracy\n1,2.0,0.3,2.1,0.28\n")
    (tmp_path / results.FILENAME).write_text('{"dataset": "cifar10"}')
    f = facts.gather(tmp_path, evaluate=False)
    assert f.results is None and any("results.json unreadable (it lacks" in n for n in f.notes)
