"""The main job, once per dataset (eICU, MIMIC-IV): raw files -> cohort and splits -> MGA
pretraining -> contrastive and scratch embeddings -> static MLP / LSTM baselines -> the backbone
sweep ((Q)LoRA fine-tuning of the decoders on event timelines, Ray Tune over Ray Train), then the
report, all in one MLflow experiment.

    python jobs/sweep_backbones.py                       # the demo recipe: local Ray, synthetic data, tiny backbones, four tasks
    python jobs/sweep_backbones.py --dataset mimic --tasks mortality   # synthetic MIMIC-IV, mortality only
    python jobs/sweep_backbones.py --dataset meds --raw /data/mimic-iv-meds --codes mimic_iv   # a MEDS ETL's output
    ray job submit --working-dir . -- python jobs/sweep_backbones.py --config cluster --dataset eicu \\
        --raw s3://BUCKET/eicu-crd/2.0 --backbones local --model-dir /models --search-space search_spaces/backbones.yaml
    ray job submit --working-dir . -- python jobs/sweep_backbones.py --config cluster --data s3://BUCKET/eicu-v1 ...

--config names a shipped recipe (demo, the default; cluster, the paper's settings) or a YAML file,
which may start from a recipe with `base: demo`. Inputs: --raw is a raw eICU v2.0, MIMIC-IV or MEDS
folder (name which with --dataset; the cohort and splits are prepared under --workdir); --data is a
dataset folder already written by jobs/preprocess.py, as in the other jobs. Either may be a URI
(s3://, gs://, file://, ...), copied once into --workdir/staged. --storage (default
$CLINTRAJ_STORAGE) puts checkpoints, adapters and Tune state in cluster storage.
"""

from clintraj import cli, console, names
from clintraj.config import load
from clintraj.evaluation.comparison import comparison_table, console_tables, markdown
from clintraj.tasks import window_text
from clintraj.training.pretrain import PretrainConfig
from clintraj.training.sequential import SequentialTrainConfig
from clintraj.tuning import load_search_space
from clintraj.workflows.end_to_end import EndToEndConfig, prepared_dataset, run

PAPER_TABLES = {"mimic": "MIMIC-IV (the paper's Table 2)", "eicu": "eICU (the paper's Table 3)",
                "meds": "MEDS dataset (no paper table)"}


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--config", default="demo",
                        help="a shipped recipe (demo, cluster, smollm2) or a YAML file over EndToEndConfig (default: demo)")
    parser.add_argument("--dataset", "--datasets", dest="datasets", nargs="+", choices=cli.DATASETS,
                        help="which datasets run (default: the config's; the demo's are eicu and mimic): what "
                             "--raw holds, or which synthetic data is made (meds: --raw or --data only)")
    inputs = parser.add_mutually_exclusive_group()
    inputs.add_argument("--raw", type=cli.location,
                        help="with --dataset eicu a raw eICU v2.0 folder, with --dataset mimic a MIMIC-IV folder with "
                             "mimic-cxr-jpg/ and mimic-iv-note/ beside hosp/ and icu/, with --dataset meds a MEDS "
                             f"folder (default: synthetic data, made once): {cli.LOCATION}")
    inputs.add_argument("--data", type=cli.location,
                        help=f"instead of --raw, a dataset folder written by jobs/preprocess.py: {cli.LOCATION}")
    parser.add_argument("--backbones", choices=["tiny", "hub", "local"],
                        help="backbone weights: tiny random models (the demo's), the Hugging Face hub, or "
                             "--model-dir/<name>/ (default: the config's)")
    parser.add_argument("--model-dir", help="folder of <backbone>/ weight folders (default: $CLINTRAJ_MODEL_DIR)")
    parser.add_argument("--search-space", help="the backbone sweep's space, e.g. search_spaces/backbones.yaml")
    parser.add_argument("--pretrain-search-space",
                        help="each dataset's pretraining sweep, '{dataset}' standing for its name, e.g. "
                             "'search_spaces/pretrain_{dataset}.yaml' (default: the config's pretrain_search)")
    parser.add_argument("--tasks", nargs="+", choices=["mortality", "los", "phenotyping"],
                        help="tasks of the backbone sweep, each run on the datasets that have it (eICU: mortality, "
                             "los; MIMIC: mortality, phenotyping; default: all of them)")
    parser.add_argument("--resume", action="store_true", help="restore an interrupted backbone sweep (Tuner.restore)")
    cli.add_meds_arguments(parser)
    cli.add_run_arguments(parser)
    args = parser.parse_args()

    config = load(EndToEndConfig, args.config)
    if args.datasets:
        config.datasets = list(dict.fromkeys(args.datasets))
    if args.backbones:
        config.sequential.weights = args.backbones
    if args.model_dir:
        config.sequential.model_dir = args.model_dir
    if args.search_space:
        config.backbone_search = load_search_space(args.search_space, SequentialTrainConfig)
    if args.tasks:
        config.sequential_tasks = args.tasks
    if args.experiment:
        config.experiment = args.experiment
    config.prepare.meds = cli.meds_config(args, config.prepare.meds)
    cli.stage_arguments(args, "raw", "data")
    if args.data and not args.datasets:  # a prepared dataset says which it is
        config.datasets = [prepared_dataset(args.data)]
    if args.pretrain_search_space:
        config.pretrain_search = {name: load_search_space(args.pretrain_search_space.format(dataset=name),
                                                          PretrainConfig) for name in config.datasets}

    def job(args) -> None:
        tracking = cli.tracking(args)
        results = run(config, args.workdir, tracking, raw=args.raw, dataset=args.data,
                      resume=args.resume, storage=args.storage)
        print_tables(results)
        console.say(f"MLflow experiment '{config.experiment}'. Open it with:\n  {tracking.ui_command()}\n"
                    f"and compare its trials at:\n  {tracking.runs_url(tracking.experiment(config.experiment))}")

    cli.main(job, args)


def print_tables(results) -> None:
    """The paper's Tables 2 and 3 (in its order) compacted: per task, headed by the time its
    predictions are made, its headline metric for each model, scratch and contrastive side by side.
    The report and MLflow hold every metric."""
    static, sequential = results.static, results.sequential
    for name in [n for n in ("mimic", "eicu", "meds") if n in results.windows]:
        table = comparison_table(sequential[sequential["dataset"] == name], static[static["dataset"] == name])
        console.say(f"\n{PAPER_TABLES[name]}: test metrics (95% bootstrap CIs); the report has the others.")
        for task, (metric, rows) in console_tables(table).items():
            heading = names.section(name, task, window_text(results.windows[name].get(task)))
            console.say(f"\n{heading}: {metric}\n{markdown(rows).rstrip()}")


if __name__ == "__main__":
    main()
