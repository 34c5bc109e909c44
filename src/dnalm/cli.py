"""Command line helpers around the workflow (the workflow itself runs with `snakemake`).

    dnalm provenance FILE.parquet           print the provenance a result file carries
    dnalm check-model MODEL [--window 512]  will this model load here and fit the windows?
    dnalm build-tiny-encoder OUT [...]      the demo's random DNABERT-architecture encoder
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import InputError


def _provenance(args) -> None:
    from .io import read_provenance

    print(json.dumps(read_provenance(args.file), indent=2, sort_keys=True))


def _check_model(args) -> None:
    from transformers import AutoConfig

    from .encoder import check_fits, fingerprint, kmer_size, load_vocab, resolve

    model_dir = resolve(args.model, args.revision)
    k = kmer_size(load_vocab(model_dir), model_dir / "vocab.txt")
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=args.trust_remote_code)
    check_fits(config, k, args.window, model_dir / "config.json")
    print(f"{args.model}: DNABERT-{k} at {model_dir}, hidden {config.hidden_size}, "
          f"{config.max_position_embeddings} positions; {args.window} bp windows fit. {fingerprint(model_dir)}")


def _build_tiny(args) -> None:
    from .encoder import build_tiny_encoder

    out = build_tiny_encoder(args.out, k=args.kmer, hidden=args.hidden, layers=args.layers, heads=args.heads,
                             seed=args.seed)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dnalm", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("provenance", help="print the provenance stored in a Parquet result")
    p.add_argument("file")
    p.set_defaults(run=_provenance)
    p = sub.add_parser("check-model", help="resolve a model offline and check it fits the windows")
    p.add_argument("model", help="local directory or hub id in the local Hugging Face cache")
    p.add_argument("--revision", default=None)
    p.add_argument("--window", type=int, default=512, help="window size in bp (default 512)")
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(run=_check_model)
    p = sub.add_parser("build-tiny-encoder", help="build the demo's small random encoder")
    p.add_argument("out")
    p.add_argument("--kmer", type=int, default=6)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_build_tiny)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except InputError as err:
        print(f"dnalm: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
