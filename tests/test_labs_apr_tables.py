"""labkit.labs.apr_tables (Labs 03-06): seed tables beside the APR paper's numbers, and the verdicts on its Tables 1
and 3 generated from hand-made records."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from labkit import papers, stats
from labkit.labs import apr_tables
from labkit.suites import WORST_CASE

from conftest import result_row as row


def outcome_row(defence: str, attack: str, broken: int, n: int, **kw) -> dict:
    """A record row whose per-image outcomes break the first ``broken`` of ``n`` images (nested across rows)."""
    return row(defence, attack, broken / n, n=n, outcomes=tuple([1] * broken + [0] * (n - broken)), **kw)


# -- tables ----------------------------------------------------------------------------------------------------------

def test_seed_table_uses_wilson_for_one_seed_and_t_intervals_across_seeds() -> None:
    one = apr_tables.seed_table([row("APR", "DE k=1", 0.25), row("APR", "corner", 0.5)], papers.APR2024_TABLE1,
                            eval_size=500)
    de, corner = one
    assert de["asr"] == pytest.approx(25) and de["asr_lo"] < 25 < de["asr_hi"]
    assert de["robustness"] == pytest.approx(75) and de["robustness_lo"] == pytest.approx(100 - de["asr_hi"])
    assert de["clean_acc"] == pytest.approx(90) and de["clean_acc_lo"] < 90 < de["clean_acc_hi"]  # Wilson, n=500
    assert (de["paper_clean"], de["paper_asr"]) == papers.APR2024_TABLE1["APR"]
    assert corner["paper_asr"] is None  # the paper's numbers are for its DE attack only
    many = apr_tables.seed_table([row("APR", "DE k=1", a, seed=s) for s, a in enumerate((0.2, 0.3, 0.25))])
    assert many[0]["seeds"] == 3 and many[0]["asr"] == pytest.approx(25) and many[0]["images"] == 300
    assert many[0]["asr_lo"] == pytest.approx(100 * stats.mean_ci([0.2, 0.3, 0.25])[1])
    targeted = apr_tables.seed_table([row("APR", "DE k=1", 0.1, targeted=True)], papers.APR2024_TABLE1)
    assert targeted[0]["attack"] == "DE k=1 (targeted)" and targeted[0]["paper_asr"] is None


def test_seed_table_keeps_outcomes_of_a_single_seed_only() -> None:
    one = apr_tables.seed_table([outcome_row("APR", "DE k=1", 2, 5)])
    assert one[0]["outcomes"] == (1, 1, 0, 0, 0)
    many = apr_tables.seed_table([outcome_row("APR", "DE k=1", 2, 5, seed=0),
                                  outcome_row("APR", "DE k=1", 3, 5, seed=1)])
    assert many[0]["outcomes"] is None


# -- Table 1 ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,base,apr_broken,status", [
    (200, 140, 43, "supported"),  # 70% -> 21.5%: the paper's ratio (30%), clearly significant
    (200, 140, 130, "direction supported"),  # 70% -> 65%: a fall, but nowhere near one to 30% (size contradicted)
    (200, 140, 150, "contradicted"),  # 70% -> 75%: no fall at all
    (30, 2, 1, "undecided"),  # the cpu run: 2 of 30 broken, nothing to decide on
])
def test_table1_verdict_in_each_direction(n: int, base: int, apr_broken: int, status: str) -> None:
    table = [outcome_row("No defence", "DE k=1", base, n), outcome_row("APR", "DE k=1", apr_broken, n)]
    adaptive = [outcome_row("No defence", WORST_CASE, base, n), outcome_row("APR", WORST_CASE, apr_broken, n)]
    verdicts = apr_tables.defence_verdicts(table + adaptive)
    assert [(arch, v.status) for arch, v in verdicts] == [("m", status)]
    assert "worst case" in verdicts[0][1].claim and verdicts[0][1].n == n
    profile = SimpleNamespace(name="cpu", eval_size=20_000)
    text = apr_tables.table1_verdict(apr_tables.seed_table(table + adaptive), profile)
    assert text.startswith("Profile cpu:") and "APR: clean accuracy is the paper's 90.8%" in text
    assert "n = 10000" in text  # clean accuracy over at most 10,000 test images
    assert text == apr_tables.table1_verdict(table + adaptive, profile)  # raw rows read the same
    assert f"{verdicts[0][1].label.upper()}: APR lowers the one-pixel ASR (worst case)" in text
    if status == "direction supported":
        assert verdicts[0][1].size == "smaller than claimed"
    assert "No defence: the one-pixel ASR (DE k=1) is the paper's 70.97%" in text
    if status == "undecided":
        assert verdicts[0][1].n_needed > n and "power" in text


def test_defence_verdicts_fall_back_to_de_and_holm_over_the_table() -> None:
    rows = [outcome_row("No defence", "DE k=1", 100, 200), outcome_row("APR", "DE k=1", 30, 200),
            outcome_row("DD (T=20)", "DE k=1", 59, 200, paper="DD"), outcome_row("Other", "DE k=1", 5, 200, paper=None)]
    verdicts = apr_tables.defence_verdicts(rows)
    assert [v.claim.split(" lowers")[0] for _, v in verdicts] == ["APR", "DD (T=20)"]  # no claim: no verdict
    raw = [stats.mcnemar(rows[0]["outcomes"], r["outcomes"]).p for r in rows[1:3]]
    assert [v.p for _, v in verdicts] == pytest.approx(stats.holm(raw))
    assert all("(DE k=1)" in v.claim for _, v in verdicts)
    text = apr_tables.defence_verdict(rows)
    assert text.count("[m] ") == 2 and "DD (T=20) lowers" in text
    assert "No defence with a claim" in apr_tables.defence_verdict(rows[1:])


def test_a_claim_without_paired_outcomes_is_undecided_not_dropped() -> None:
    # Lab 03's cpu sweep: the reference has the worst case, a swept pipeline only DE.
    rows = [outcome_row("No defence", "DE k=1", 60, 200), outcome_row("No defence", WORST_CASE, 80, 200),
            outcome_row("IT (JPEG q75)", "DE k=1", 40, 200, paper="IT"),
            outcome_row("IT (JPEG q75)", WORST_CASE, 60, 200, paper="IT"),
            outcome_row("JPEG q50", "DE k=1", 30, 200, paper="IT")]
    verdicts = {v.claim.split(" lowers")[0]: v for _, v in apr_tables.defence_verdicts(rows)}
    assert set(verdicts) == {"IT (JPEG q75)", "JPEG q50"}
    assert verdicts["JPEG q50"].status == "undecided" and "not attacked with worst case" in verdicts["JPEG q50"].why
    assert verdicts["IT (JPEG q75)"].n == 200


def test_defence_verdicts_count_images_not_seed_pairs_when_seeds_share_images():
    # Two seeds attacked the same 40 images; APR breaks 8 fewer per seed. Pooled, that is 80 "pairs"; the images
    # are 40, and the verdict must say so (and test them as 40).
    ids = tuple(range(100, 140))
    rows = []
    for seed in (0, 1):
        for defence, broken in (("No defence", 16), ("APR", 8)):
            for attack in ("DE k=1", WORST_CASE):
                rows.append(outcome_row(defence, attack, broken, 40, seed=seed, image_ids=ids))
    [(arch, v)] = apr_tables.defence_verdicts(rows, {k: papers.APR2024_TABLE1[k] for k in ("No defence", "APR")})
    assert v.n == 40 and "seeds averaged per image" in v.why
    without_ids = [{k: val for k, val in r.items() if k != "image_ids"} for r in rows]
    [(_, pooled)] = apr_tables.defence_verdicts(without_ids,
                                                {k: papers.APR2024_TABLE1[k] for k in ("No defence", "APR")})
    assert pooled.n == 80 and pooled.p < v.p  # pooling seeds overstates the evidence


def test_a_defence_attacked_on_a_subset_pairs_on_the_shared_images_by_index():
    # The undefended model is attacked on 40 images (ids 0..39; the first 16 broken); a defence misclassifies
    # ids 30..39 clean, so it is attacked on the other 30, listed in another order, breaking ids 0..5.
    ref_ids = list(range(40))
    mine = list(range(29, -1, -1))  # reversed: pairing must follow the ids, not the positions
    rows = []
    for attack in ("DE k=1", WORST_CASE):
        rows.append(row("No defence", attack, 16 / 40, n=40, outcomes=tuple(int(i < 16) for i in ref_ids),
                        image_ids=tuple(ref_ids)))
        rows.append(row("APR", attack, 6 / 30, n=30, outcomes=tuple(int(i < 6) for i in mine), image_ids=tuple(mine)))
    [(arch, v)] = apr_tables.defence_verdicts(rows, {k: papers.APR2024_TABLE1[k] for k in ("No defence", "APR")})
    assert v.n == 30  # the images both were attacked on
    assert v.effect == pytest.approx(100 * (6 - 16) / 30)  # 16 -> 6 broken among those 30, matched by id
    assert "our 53.3%" in v.why  # the claim scales the reference's rate on those images (16 of 30)


# -- Table 3 ---------------------------------------------------------------------------------------------------------

def test_ablation_verdicts_pair_each_variant_with_full_apr() -> None:
    n = 300
    # without the regulariser: 10 of full APR's broken images survive, 20 others break (+3.3 points, p ~ 0.1)
    mixed = tuple([0] * 10 + [1] * 70 + [0] * (n - 80))
    rows = [outcome_row("full", "DE k=1", 60, n), outcome_row("no_attention", "DE k=1", 82, n),
            outcome_row("no_adversarial", "DE k=1", 60, n),
            row("no_regularisation", "DE k=1", 70 / n, n=n, outcomes=mixed)]
    got = {v.claim.split(" raises")[0]: v for _, v in apr_tables.ablation_verdicts(rows)}
    # The paper's relative rises on our 20%: +6.8 points (1.34x; measured +7.3): supported; +12.9 (1.64x;
    # measured 0): contradicted; +3.2 (1.16x; measured +3.3, p ~ 0.1): undecided
    assert got["removing the attention gate"].status == "supported"
    assert got["removing adversarial training"].status == "contradicted"
    assert got["removing the gradient regulariser"].status == "undecided"
    text = apr_tables.ablation_verdict(rows)
    assert "largest measured rise (+7.3 points) is without the attention gate" in text
    assert "the paper's largest is without adversarial training" in text


def test_ablation_verdict_does_not_invent_a_winner() -> None:
    rows = [outcome_row(v, "DE k=1", 20, 100) for v in ("full", *apr_tables.COMPONENT)]
    assert "no removal raised the measured ASR" in apr_tables.ablation_verdict(rows)
    rows = [outcome_row("full", "DE k=1", 20, 100), outcome_row("no_attention", "DE k=1", 30, 100),
            outcome_row("no_adversarial", "DE k=1", 30, 100), outcome_row("no_regularisation", "DE k=1", 20, 100)]
    assert "shared by the attention gate and adversarial training" in apr_tables.ablation_verdict(rows)
    assert "nothing to pair" in apr_tables.ablation_verdict([row("full", "DE k=1", 0.2)])


def test_ablation_claims_transfer_the_papers_relative_rise() -> None:
    rows = [outcome_row(v, "DE k=1", 10, 100) for v in ("full", *apr_tables.COMPONENT)]
    v = next(v for _, v in apr_tables.ablation_verdicts(rows) if "adversarial" in v.claim)
    assert "1.64x full APR's" in v.claim and "21.43% -> 35.21%" in v.claim
    # The claimed change is 10% x (35.21 / 21.43 - 1) = +6.4 points, not the paper's absolute +13.78.
    assert f"{10 * (35.21 / 21.43 - 1):+.1f}" in v.sentence()
