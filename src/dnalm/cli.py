"""Command line helpers around the workflow (the workflow itself runs with `snakemake`).

    dnalm provenance FILE.parquet           print the provenance a result file carries
    dnalm check-model MODEL [--window 512]  which family, will it load here, do the windows fit?
    dnalm build-tiny-encoder OUT [...]      a small random encoder of any family (demo, tests)
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
    from .encoders import Encoder, preflight
    from .encoders.loading import describe_load
    from .settings import EncoderSpec

    spec = EncoderSpec(args.model, revision=args.revision, family=args.family,
                       trust_remote_code=args.trust_remote_code)
    family, note = preflight(spec, args.window)
    folder = family.folder
    always, most = family.window_limits()
    print(f"{args.model}: {family.name} ({family.tokenizer_name} tokens) at {folder.path}\n"
          f"  hidden size {folder.hidden_size}, {folder.positions} positions; windows up to {most} bp fit"
          + (f" ({always} bp always in one pass)" if always != most else "")
          + f"; {args.window} bp windows fit")
    print(f"  {describe_load(folder, args.trust_remote_code)}")
    if note:
        print(f"  {note}")
    if args.load:  # tokenizer and weights, as a job loads them
        encoder = Encoder.load(spec, args.window, args.window, "cpu")
        batch = encoder.tokenizer.encode(["ACGT" * (args.window // 4)])
        print(f"  loaded {type(encoder.model).__name__}: {int(batch.content_mask.sum())} content tokens for a "
              f"{4 * (args.window // 4)} bp window, {encoder.identity.model_sha256}")


def _build_tiny(args) -> None:
    from .encoders.tiny import build_tiny_encoder

    out = build_tiny_encoder(args.out, args.family, kmer=args.kmer, hidden=args.hidden, layers=args.layers,
                             heads=args.heads, seed=args.seed, positions=args.positions,
                             train_fasta=args.train_fasta)
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
    p.add_argument("--family", default="auto", help="encoder family (default: detected from the folder)")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--load", action="store_true", help="also load tokenizer and weights (imports torch)")
    p.set_defaults(run=_check_model)
    p = sub.add_parser("build-tiny-encoder", help="build a small random encoder of any family")
    p.add_argument("out")
    p.add_argument("--family", default="dnabert", help="dnabert, nucleotide_transformer, bpe or per_base")
    p.add_argument("--kmer", type=int, default=6)
    p.add_argument("--positions", type=int, default=None, help="positions (default 512; per_base 1024)")
    p.add_argument("--train-fasta", default=None, help="FASTA to train the bpe tokenizer on")
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
