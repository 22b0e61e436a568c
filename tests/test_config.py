from dataclasses import dataclass, field
from pathlib import Path

import pytest

from clintraj.config import ConfigError, flatten, load, to_dict
from clintraj.models.backbones import PAPER_BACKBONES
from clintraj.workflows.end_to_end import EndToEndConfig


@dataclass
class Inner:
    rate: float = 0.1
    names: list[str] = field(default_factory=lambda: ["a"])


@dataclass
class Outer:
    epochs: int = 3
    inner: Inner = field(default_factory=Inner)


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_and_overrides(tmp_path):
    assert load(Outer, None) == Outer()
    config = load(Outer, write(tmp_path, "epochs: 7\ninner:\n  rate: 1\n  names: [x, y]\n"))
    assert config == Outer(epochs=7, inner=Inner(rate=1.0, names=["x", "y"]))
    assert isinstance(config.inner.rate, float)


@dataclass
class Parent:
    inner: Inner = field(default_factory=lambda: Inner(rate=0.5, names=["demo"]))


def test_a_nested_section_changes_only_its_keys_over_the_parents_default(tmp_path):
    config = load(Parent, write(tmp_path, "inner:\n  rate: 2\n"))
    assert config.inner == Inner(rate=2.0, names=["demo"])  # not Inner's bare default ["a"]
    demo = load(EndToEndConfig, write(tmp_path, "base: demo\npretrain: {epochs: 2}\nsequential: {epochs: 1}\n"))
    assert demo.pretrain.epochs == 2 and demo.pretrain.latent_dim == load(EndToEndConfig, "demo").pretrain.latent_dim
    assert demo.sequential.weights == "tiny" and demo.sequential.loss_on == "last_predict"  # the demo's, kept
    assert demo.pretrain.modality_dropout == EndToEndConfig().pretrain.modality_dropout  # neither file names it


def test_recipes_load_by_name_and_a_base_chains_relative_to_its_file(tmp_path):
    demo, cluster, paper = load(EndToEndConfig, "demo"), load(EndToEndConfig, "cluster"), EndToEndConfig()
    assert (demo.experiment, demo.sequential.weights, demo.pretrain.latent_dim) == ("clintraj-demo", "tiny", 32)
    assert (cluster.sequential.weights, cluster.sequential.use_gpu) == ("hub", True)
    assert cluster.pretrain.epochs == paper.pretrain.epochs and cluster.sequential.epochs == paper.sequential.epochs
    assert len(cluster.backbone_search.params["backbone"]["grid"]) == 6
    # the demo fills every backbone row of the paper's Tables 2 and 3
    assert set(demo.backbone_search.params["backbone"]["grid"]) == set(PAPER_BACKBONES)
    write(tmp_path, "base: demo\nseed: 3\n", name="mine.yaml")
    chained = load(EndToEndConfig, write(tmp_path, "base: mine.yaml\nexperiment: x\n", name="theirs.yaml"))
    assert (chained.seed, chained.experiment, chained.pretrain.latent_dim) == (3, "x", 32)
    with pytest.raises(ConfigError, match="config file not found: nope .*demo, cluster"):
        load(EndToEndConfig, write(tmp_path, "base: nope\n"))


def test_the_main_job_runs_four_tasks_and_a_dataset_left_out_of_stays_keeps_its_default(tmp_path):
    demo = load(EndToEndConfig, write(tmp_path, "base: demo\nsynthetic_stays: {eicu: 800}\n"))
    assert demo.stays_of("eicu") == 800 and demo.stays_of("mimic") == EndToEndConfig().stays_of("mimic") == 1500
    assert demo.datasets == ["eicu", "mimic"]  # the demo: the paper's four tasks
    assert [demo.tasks_of(name) for name in demo.datasets] == [
        (["mortality", "los"], ["mortality", "los"]), (["mortality", "phenotyping"], ["mortality", "phenotyping"])]
    demo.sequential_tasks = ["mortality", "los"]
    assert demo.tasks_of("mimic") == (["mortality", "phenotyping"], ["mortality"])


def test_the_main_job_refuses_what_its_datasets_lack_before_any_work(tmp_path):
    from clintraj.tracking import Tracking
    from clintraj.workflows.end_to_end import run

    tracking = Tracking.resolve(None, tmp_path / "mlflow")
    config = EndToEndConfig(datasets=["mimic"], sequential_tasks=["los"])
    with pytest.raises(ValueError, match=r"the datasets \['mimic'\] have the tasks \['mortality', 'phenotyping'\], "
                                         r"not \['los'\]"):
        run(config, tmp_path, tracking)
    with pytest.raises(ValueError, match="datasets must be some of"):
        run(EndToEndConfig(datasets=["mimic-iii"]), tmp_path, tracking)
    with pytest.raises(ValueError, match=r"synthetic_stays names \['mimc'\]"):
        run(EndToEndConfig(synthetic_stays={"mimc": 500}), tmp_path, tracking)
    with pytest.raises(ValueError, match="say which with --dataset eicu, mimic or meds"):
        run(EndToEndConfig(), tmp_path, tracking, raw=tmp_path)
    with pytest.raises(ValueError, match="there is no synthetic MEDS dataset: give a MEDS folder"):
        run(EndToEndConfig(datasets=["meds"]), tmp_path, tracking)
    assert not (tmp_path / "raw").exists()  # nothing was generated


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "inner:\n  ratee: 0.2\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: key 'inner\.ratee': unknown key"):
        load(Outer, path)


def test_mistyped_value_names_key_and_file(tmp_path):
    with pytest.raises(ConfigError, match=r"c\.yaml: key 'epochs': expected int, got str"):
        load(Outer, write(tmp_path, "epochs: three\n"))
    with pytest.raises(ConfigError, match=r"key 'epochs': expected int, got a boolean"):
        load(Outer, write(tmp_path, "epochs: true\n"))


def test_a_value_its_section_refuses_names_key_and_file(tmp_path):
    refused = r"c\.yaml: key 'prepare': task_fractions: three shares .* got \[0\.5, 0\.5, 0\.5\]"
    with pytest.raises(ConfigError, match=refused):
        load(EndToEndConfig, write(tmp_path, "prepare:\n  task_fractions: [0.5, 0.5, 0.5]\n"))
    with pytest.raises(ConfigError, match=r"key 'prepare': fractions: three shares"):
        load(EndToEndConfig, write(tmp_path, "prepare:\n  fractions: [0.8, 0.3, -0.1]\n"))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load(Outer, tmp_path / "nope.yaml")


def test_the_main_job_config_round_trips(tmp_path):
    import yaml

    for config in (EndToEndConfig(), load(EndToEndConfig, "demo"), load(EndToEndConfig, "cluster")):
        path = write(tmp_path, yaml.safe_dump(to_dict(config)))
        assert load(EndToEndConfig, path) == config
    assert flatten({"a": {"b": 1}, "c": 2}) == {"a.b": 1, "c": 2}


@pytest.mark.parametrize("name,config_cls", [
    ("pretrain_eicu.yaml", "clintraj.training.pretrain:PretrainConfig"),
    ("pretrain_mimic.yaml", "clintraj.training.pretrain:PretrainConfig"),
    ("pretrain_meds.yaml", "clintraj.training.pretrain:PretrainConfig"),
    ("static_baselines.yaml", "clintraj.training.static:StaticTrainConfig"),
    ("backbones.yaml", "clintraj.training.sequential:SequentialTrainConfig"),
])
def test_shipped_search_spaces_load_against_their_configs(name, config_cls):
    import importlib

    from clintraj.models.backbones import BACKBONES, PAPER_BACKBONES
    from clintraj.tuning import load_search_space

    module, cls = config_cls.split(":")
    space = load_search_space(Path(__file__).resolve().parents[1] / "search_spaces" / name,
                              getattr(importlib.import_module(module), cls))
    assert space.params
    if name == "backbones.yaml":  # the paper's six decoders, each a registry entry
        assert space.params["backbone"] == {"grid": list(PAPER_BACKBONES)}
        assert set(PAPER_BACKBONES) < set(BACKBONES)


def test_a_resumed_sweep_reopens_its_parent_run(tmp_path):
    from clintraj.tracking import Tracking
    from clintraj.tuning import sweep_parent_run

    tracking = Tracking.resolve(None, tmp_path / "mlflow")
    with sweep_parent_run(tracking, "sweeps", "s", "eicu", "static-baselines", tmp_path / "tune") as (first, _):
        pass
    with sweep_parent_run(tracking, "sweeps", "s", "eicu", "static-baselines", tmp_path / "tune", True) as (again, _):
        assert again.info.run_id == first.info.run_id
    with sweep_parent_run(tracking, "sweeps", "s", "eicu", "static-baselines", tmp_path / "tune") as (fresh, _):
        assert fresh.info.run_id != first.info.run_id
    from mlflow.tracking import MlflowClient

    assert MlflowClient(tracking.uri).get_run(fresh.info.run_id).data.tags["stage"] == "static-baselines"


def test_the_main_job_checks_its_search_spaces_before_any_work(tmp_path):
    from clintraj.tracking import Tracking
    from clintraj.workflows.end_to_end import run

    tracking = Tracking.resolve(None, tmp_path / "mlflow")
    demo = load(EndToEndConfig, "demo")
    assert set(demo.pretrain_search) == {"eicu", "mimic"}
    assert demo.pretrain_search["eicu"].params == {"missing_tokens_in_context": {"grid": [True, False]}}
    wrong = load(EndToEndConfig, write(tmp_path, "base: demo\npretrain_search:\n  eicu:\n    params:\n"
                                                 "      learning_rate: {choice: [0.1]}\n"))
    with pytest.raises(ConfigError, match=r"pretrain_search\.eicu: key 'params\.learning_rate': not a field of "
                                          "PretrainConfig"):
        run(wrong, tmp_path, tracking)
    with pytest.raises(ValueError, match=r"pretrain_search names \['mimic-iii'\]"):
        run(EndToEndConfig(pretrain_search={"mimic-iii": demo.pretrain_search["eicu"]}), tmp_path, tracking)
    assert not (tmp_path / "raw").exists()  # nothing was generated
