"""The variant scores' definitions (variants.scoring): the zero-shot LLR against a direct
computation with the model's own masked-LM head, for every tokenization; antisymmetry
(swapping REF and ALT negates every signed score); reverse-complement invariance with
strands both; the supervised scores' formulas; and which checkpoints carry an MLM head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dnalm.encoders import Encoder, ModelFolder, masked_lm_head_in
from dnalm.encoders.tiny import build_tiny_encoder
from dnalm.settings import EncoderSpec
from dnalm.variants.scoring import ZeroShot, crop, differing_span, distances, llr_queries, probability_scores
from dnalm.windows.bases import reverse_complement

W = 64
SHAPE = dict(hidden=32, layers=1, heads=2)
FAMILIES = ("dnabert", "nucleotide_transformer", "per_base")


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlm")
    loaded = {}
    for family in FAMILIES:
        folder = build_tiny_encoder(root / family, family, **SHAPE)
        loaded[family] = Encoder.load(EncoderSpec(str(folder), precision="fp32"), W, W, masked_lm=True)
    return loaded


def _window(seed: int) -> str:
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), W))


def _snv(window: str, at: int) -> str:
    return window[:at] + "ACGT"[("ACGT".index(window[at]) + 1) % 4] + window[at + 1:]


def _direct_llr(encoder, ref_ids: list[int], alt_ids: list[int], masked: list[int]) -> float:
    """log P(alt tokens) - log P(ref tokens) at `masked` content positions, by one plain
    forward pass of the transformers model with those positions masked."""
    tokenizer = encoder.tokenizer
    ids = list(tokenizer.prefix) + list(ref_ids) + list(tokenizer.suffix)
    for position in masked:
        ids[len(tokenizer.prefix) + position] = tokenizer.mask_id
    with torch.no_grad():
        logits = encoder.model(input_ids=torch.tensor([ids])).logits[0]
    logp = torch.log_softmax(logits.double(), -1)
    at = [len(tokenizer.prefix) + p for p in masked]
    return float(sum(logp[a, alt_ids[p]] - logp[a, ref_ids[p]] for a, p in zip(at, masked)))


def test_llr_of_an_snv_is_the_masked_marginal_of_the_models_own_head(encoders):
    """DNABERT-6: the 6 overlapping k-mers holding the base masked together; NT: the one
    6-mer holding it; per-base: the base. Token ids come from the k-mers themselves."""
    ref = _window(1)
    alt = _snv(ref, 30)
    kmers = lambda w: [w[i: i + 6] for i in range(len(w) - 5)]  # noqa: E731
    # NT: 6-mers from the start, the bases left over one token each
    chunks = lambda w: [w[i: i + 6] for i in range(0, len(w) - 5, 6)] + list(w[len(w) // 6 * 6:])  # noqa: E731
    expected_masks = {"dnabert": list(range(25, 31)), "nucleotide_transformer": [5], "per_base": [30]}
    for family, encoder in encoders.items():
        hf = encoder.family.folder
        vocab = {line.strip(): i for i, line in enumerate((hf.path / "vocab.txt").read_text().splitlines())} \
            if (hf.path / "vocab.txt").exists() else None
        split = {"dnabert": kmers, "nucleotide_transformer": chunks, "per_base": list}[family]
        ref_ids = encoder.tokenizer.content([ref]).row(0).tolist()
        alt_ids = encoder.tokenizer.content([alt]).row(0).tolist()
        if vocab is not None:  # the tokenizer's ids are the vocabulary's k-mers, in order
            assert ref_ids == [vocab[t] for t in split(ref)]
        lo, ref_hi, alt_hi = differing_span(np.array(ref_ids), np.array(alt_ids))
        assert list(range(lo, ref_hi)) == expected_masks[family] and ref_hi == alt_hi
        direct = _direct_llr(encoder, ref_ids, alt_ids, expected_masks[family])
        assert ZeroShot(encoder).llr([ref], [alt])[0] == pytest.approx(direct, rel=1e-5, abs=1e-6), family


def _direct_log_p(encoder, ids: list[int], position: int) -> float:
    """log P(ids[position]) with that one content position masked, by a plain forward pass."""
    tokenizer = encoder.tokenizer
    row = list(tokenizer.prefix) + list(ids) + list(tokenizer.suffix)
    at = len(tokenizer.prefix) + position
    row[at] = tokenizer.mask_id
    with torch.no_grad():
        logits = encoder.model(input_ids=torch.tensor([row])).logits[0]
    return float(torch.log_softmax(logits.double(), -1)[at, ids[position]])


def test_llr_of_an_indel_is_the_pseudo_log_likelihood_difference(encoders):
    """An insertion: each differing token masked alone, in its own allele's window (the alt
    window is the ref window with ALT for REF, both flanks shared: `zero_shot_alt`)."""
    encoder = encoders["per_base"]
    ref = _window(2)
    alt = ref[:30] + "GA" + ref[30:]
    ref_ids = encoder.tokenizer.content([ref]).row(0).tolist()
    alt_ids = encoder.tokenizer.content([alt]).row(0).tolist()
    how, _ = llr_queries(np.array(ref_ids), np.array(alt_ids), None)
    lo, ref_hi, alt_hi = differing_span(np.array(ref_ids), np.array(alt_ids))
    assert how == "pll" and ref_hi == lo and alt_hi == lo + 2  # no ref base differs: the token before is taken
    lo -= 1
    direct = sum(_direct_log_p(encoder, alt_ids, p) for p in range(lo, alt_hi)) \
        - sum(_direct_log_p(encoder, ref_ids, p) for p in range(lo, ref_hi))
    assert ZeroShot(encoder).llr([ref], [alt])[0] == pytest.approx(direct, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_swapping_ref_and_alt_negates_the_llr(encoders, family):
    encoder = encoders[family]
    ref = _window(3)
    pairs = [(ref, _snv(ref, 20)), (ref, ref[:20] + ref[23:]), (ref, ref[:20] + "TTT" + ref[20:])]
    zero_shot = ZeroShot(encoder)
    forward = zero_shot.llr([r for r, _ in pairs], [a for _, a in pairs])
    backward = zero_shot.llr([a for _, a in pairs], [r for r, _ in pairs])
    np.testing.assert_allclose(forward, -backward, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_with_both_strands_the_llr_is_the_same_on_the_reverse_complement(encoders, family):
    encoder = encoders[family]
    ref = _window(4)
    alt = _snv(ref, 33)
    zero_shot = ZeroShot(encoder)
    here = zero_shot.llr([ref], [alt], "both")
    there = zero_shot.llr([reverse_complement(ref)], [reverse_complement(alt)], "both")
    np.testing.assert_allclose(here, there, rtol=1e-6, atol=1e-6)
    assert zero_shot.llr([ref], [alt])[0] != pytest.approx(zero_shot.llr([reverse_complement(ref)],
                                                                          [reverse_complement(alt)])[0])


def test_supervised_scores_are_antisymmetric_and_distances_symmetric():
    p_ref, p_alt = np.array([0.2, 0.9, 0.5]), np.array([0.6, 0.1, 0.5])
    forward, backward = probability_scores(p_ref, p_alt), probability_scores(p_alt, p_ref)
    for score in ("delta", "log2_odds", "score_change"):
        np.testing.assert_allclose(forward[score], -backward[score])
    np.testing.assert_allclose(forward["log2_odds"][0], np.log2(0.6 / 0.4) - np.log2(0.2 / 0.8))
    np.testing.assert_allclose(forward["score_change"][1], (0.1 - 0.9) * 0.9)
    a, b = np.random.default_rng(0).normal(size=(2, 5, 8))
    for score, values in distances(a, b).items():
        np.testing.assert_allclose(values, distances(b, a)[score])
    np.testing.assert_allclose(distances(a, a)["cosine_distance"], 0, atol=1e-12)


def test_a_span_is_cropped_to_the_models_positions():
    ids = np.arange(100)
    kept, start = crop(ids, 90, 95, 20)
    assert len(kept) == 20 and start == 80 and 90 - start >= 0
    kept, start = crop(ids, 2, 3, 20)
    assert start == 0 and len(kept) == 20
    assert crop(ids, 50, 51, None)[1] == 0


def test_which_checkpoints_carry_a_masked_lm_head(tmp_path):
    from transformers import BertConfig, BertModel

    tiny = build_tiny_encoder(tmp_path / "tiny", "dnabert", **SHAPE)
    assert masked_lm_head_in(ModelFolder.open(str(tiny)))
    headless = tmp_path / "headless"
    BertModel(BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(headless)
    assert not masked_lm_head_in(ModelFolder.open(str(headless)))


# ------------------------------------------------------- whole scoring jobs


def _score(tmp_path, name: str, contig: str, variants: list[tuple[int, str, str]], model, strands: str):
    """score_shard over a reference of one contig and these (pos, ref, alt) SNVs/MNVs."""
    import pysam

    from dnalm.variants.records import Variant
    from dnalm.variants.stage import score_shard, write_table

    folder = tmp_path / name
    folder.mkdir()
    fasta = folder / "ref.fa"
    fasta.write_text(f">c\n{contig}\n")
    pysam.faidx(str(fasta))
    table = folder / "variants.parquet"
    write_table([Variant(i, 0, "c", pos, f"v{i}", ref, alt) for i, (pos, ref, alt) in enumerate(variants)],
                str(table), {"stage": "variants"})
    spec = EncoderSpec(str(model), strands=strands)
    return score_shard(str(table), 0, 100, str(fasta), 128, 64, spec, {}, "mean", str(folder / "scores.parquet"),
                       mlm_spec=EncoderSpec(str(model), precision="fp32", strands=strands))


@pytest.fixture(scope="module")
def tiny_dnabert(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("dnabert") / "m", "dnabert", **SHAPE)


def test_a_variant_scores_the_same_on_the_reverse_complemented_reference_with_both_strands(tiny_dnabert, tmp_path):
    """128-bp windows: an SNV's flanks are 63 and 64 bases, so each strand's windows are the
    other's one base apart; both placements averaged, the scores agree exactly."""
    contig = "".join(np.random.default_rng(5).choice(list("ACGT"), 600))
    flip = {"A": "T", "C": "G", "G": "C", "T": "A"}
    other = lambda b: "ACGT"[("ACGT".index(b) + 2) % 4]  # noqa: E731
    snvs = [(pos, contig[pos - 1], other(contig[pos - 1])) for pos in (150, 301, 452)]
    mnv = (220, contig[219:221], other(contig[219]) + other(contig[220]))
    forward = _score(tmp_path, "forward", contig, [*snvs, mnv], tiny_dnabert, "both")
    length = len(contig)
    mirrored = [(length - pos - len(ref) + 2, reverse_complement(ref), "".join(flip[b] for b in alt[::-1]))
                for pos, ref, alt in [*snvs, mnv]]
    reverse = _score(tmp_path, "reverse", reverse_complement(contig), mirrored, tiny_dnabert, "both")
    for column in ("llr", "cosine_distance", "l2_distance"):
        np.testing.assert_allclose(forward[column], reverse[column], rtol=1e-4, atol=1e-5)
    single = _score(tmp_path, "single", reverse_complement(contig), mirrored, tiny_dnabert, "single")
    assert not np.allclose(forward["llr"], single["llr"])


def test_swapping_ref_and_alt_on_a_reference_that_carries_the_alt_negates_the_llr(tiny_dnabert, tmp_path):
    contig = "".join(np.random.default_rng(6).choice(list("ACGT"), 600))
    pos, ref = 300, contig[299]
    alt = "ACGT"[("ACGT".index(ref) + 1) % 4]
    carrier = contig[:299] + alt + contig[300:]
    there = _score(tmp_path, "ref", contig, [(pos, ref, alt)], tiny_dnabert, "single")
    back = _score(tmp_path, "alt", carrier, [(pos, alt, ref)], tiny_dnabert, "single")
    np.testing.assert_allclose(there["llr"], -back["llr"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(there["cosine_distance"], back["cosine_distance"], rtol=1e-5, atol=1e-7)


def test_a_window_of_mostly_n_gets_no_head_score(tiny_dnabert, tmp_path):
    """As classify gives a sequence of N-heavy windows no call, a variant whose windows
    hold more N than heads.max_n_fraction gets NaN from the heads (the LLR still reads it)."""
    import pysam

    from dnalm.learning.heads import save_head
    from dnalm.learning.toolkit import new_head
    from dnalm.settings import HeadSettings
    from dnalm.variants.records import Variant
    from dnalm.variants.stage import score_shard, write_table

    contig = "".join(np.random.default_rng(8).choice(list("ACGT"), 600))
    contig = contig[:200] + "N" * 149 + contig[349] + "N" * 150 + contig[500:]
    fasta = tmp_path / "ref.fa"
    fasta.write_text(f">c\n{contig}\n")
    pysam.faidx(str(fasta))
    encoder = Encoder.load(EncoderSpec(str(tiny_dnabert)), 128, 64)
    head = new_head("mean", HeadSettings(), ["a", "b"], encoder.identity.hidden_size,
                    np.random.default_rng(0).normal(size=(20, encoder.identity.hidden_size)).astype(np.float32),
                    "single", encoder=encoder.space.located().as_dict())
    save_head(head, tmp_path / "head")
    other = lambda b: "ACGT"[("ACGT".index(b) + 1) % 4]  # noqa: E731
    write_table([Variant(0, 0, "c", 100, "clean", contig[99], other(contig[99])),
                 Variant(1, 0, "c", 350, "in_n", contig[349], other(contig[349]))],
                str(tmp_path / "variants.parquet"), {"stage": "variants"})
    scores = score_shard(str(tmp_path / "variants.parquet"), 0, 10, str(fasta), 128, 64, EncoderSpec(str(tiny_dnabert)),
                         {"mean": str(tmp_path / "head")}, "mean", str(tmp_path / "scores.parquet"),
                         mlm_spec=EncoderSpec(str(tiny_dnabert), precision="fp32"), max_n_fraction=0.5)
    assert np.isfinite(scores.loc[0, "mean.p_ref.a"]) and np.isnan(scores.loc[1, "mean.p_ref.a"])
    assert np.isnan(scores.loc[1, "mean.log2_odds.b"]) and np.isfinite(scores["llr"]).all()
