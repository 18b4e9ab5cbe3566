"""``sctranscoder train-model`` and ``sctranscoder predict``: a C2S model trained on, and run over, a user's h5ad."""

from __future__ import annotations

from pathlib import Path

from .._atomic import atomic_path
from .._obs import require_obs_column
from ._commands import UsageError

PREDICTION_SUFFIXES = (".csv", ".h5ad")


def _read_h5ad(path: Path):
    import anndata as ad

    if not path.is_file() or path.suffix != ".h5ad":
        raise UsageError(f"input {path} is not an .h5ad file")
    return ad.read_h5ad(path)


def _model_folder(path: Path) -> None:
    if not (path / "config.json").is_file():
        raise UsageError(f"model {path} is not a Hugging Face model folder (no config.json); pass the folder "
                         "sctranscoder train-model wrote")


def _train_arguments(args) -> dict:
    """train_c2s's arguments from train-model's options (the recipe's defaults where none is given)."""
    import sctranscoder as sct

    prompt = {"n_genes": args.n_genes, "organism": args.organism, "tie_break": args.tie_break, "layer": args.layer,
              "use_raw": args.use_raw}
    recipe = {"epochs": args.epochs, "tokenizer": args.tokenizer, "seed": args.seed,
              "validation_size": args.validation_size, "patience": args.patience, "batch_size": args.batch_size,
              "learning_rate": args.lr}
    prompt = {name: value for name, value in prompt.items() if value is not None}
    recipe = {name: value for name, value in recipe.items() if value is not None}
    return dict(settings=sct.pp.PromptSettings(**prompt) if prompt else None,
                train_config=sct.models.TrainConfig(**recipe), config=args.model_config,
                base_model=None if args.base_model is None else str(args.base_model))


def cmd_train_model(args) -> None:
    import sctranscoder as sct

    adata = _read_h5ad(args.input)
    require_obs_column(adata, args.label_key)  # before any sentence is built or step taken
    if args.out is None and not args.plan:
        raise UsageError("--out is missing: name the folder the model goes to (or pass --plan to only plan)")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise UsageError(f"out {args.out} exists and is not a folder")
    if args.base_model is not None:
        _model_folder(args.base_model)
    if args.plan:
        print(sct.models.plan_training(adata, args.label_key, **_train_arguments(args)))
        return
    model = sct.models.train_c2s(adata, args.label_key, args.out, resume=args.resume, **_train_arguments(args))
    print(f"wrote {args.out}")
    evaluation = model.metadata.get("held_out_evaluation") or {}
    if "c2s_accuracy" in evaluation:
        print(f"  held-out accuracy {evaluation['c2s_accuracy']:.3f} on {evaluation['n_cells']} cells; a logistic "
              f"regression on the same cells' expression: {evaluation['logistic_regression_accuracy']:.3f}")


def _prediction_table(adata, key: str):
    import pandas as pd

    table = pd.DataFrame({"prediction": adata.obs[key].astype(str)}, index=adata.obs_names)
    table.index.name = "cell"
    probabilities = adata.obsm.get(f"{key}_probabilities")
    if probabilities is not None:
        candidates = list(adata.uns[key]["candidates"])
        table["probability"] = probabilities.max(axis=1)
        for j, label in enumerate(candidates):
            table[f"P({label})"] = probabilities[:, j]
    return table


def cmd_predict(args) -> None:
    import sctranscoder as sct

    if args.out.suffix not in PREDICTION_SUFFIXES:
        raise UsageError(f"--out {args.out} must end in .csv (a table) or .h5ad (a copy of the input with the "
                         "predictions)")
    if args.out.exists() and not args.overwrite:
        raise UsageError(f"--out {args.out} exists; pass --overwrite to replace it")
    if args.out.resolve() == args.input.resolve():
        raise UsageError(f"--out {args.out} is the input; predictions go into a copy: give another file name")
    _model_folder(args.model)
    adata = _read_h5ad(args.input)
    model = sct.models.load(args.model)
    sct.tl.predict_cell_types(adata, model, key_added=args.key_added, mode=args.mode, batch_size=args.batch_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        if args.out.suffix == ".csv":
            _prediction_table(adata, args.key_added).to_csv(tmp)
        else:
            adata.write_h5ad(tmp)
    print(f"wrote {args.out}: {adata.n_obs} cells")
    label_key = model.metadata.get("label_key")
    if label_key is not None and label_key in adata.obs:
        truth = adata.obs[label_key].astype(str).to_numpy()
        agree = float((adata.obs[args.key_added].astype(str).to_numpy() == truth).mean())
        print(f"  agrees with adata.obs[{label_key!r}] in {agree:.1%} of cells (the model's training labels)")
