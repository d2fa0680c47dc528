// Level L4: the losses of the entropy-family test-time methods EATA, DeYO and MEMO, one file
// each (it3/methods/eata.cpp, deyo.cpp, memo.cpp), called from it3::Adapter::adaptation_loss
// (docs/it3.md, "Methods"). Pure functions of tensors, so tests can check them by hand.
//
// Every filter is a 0/1 weight computed on the device (no read-back, no dynamic shapes): a
// sample that does not pass contributes zero to the loss; the loss averages over the samples
// that pass (max(count, 1), so a batch where none passes gives a zero loss, as the published
// code does).
#pragma once
#include <string>
#include <vector>

#include "it3/adapt.h"

namespace idem::it3::entropy {

// H_i = −Σ_c p_ic log p_ic with p = softmax(logits): (B, C) → (B).
Tensor sample_entropy(const Tensor& logits);

// ---- EATA (Niu et al., "Efficient Test-Time Model Adaptation without Forgetting", ICML 2022) ----

// The redundancy filter's moving average of the kept samples' probabilities, across steps and
// batches (reset with the weights under a per-batch reset).
struct EataState {
  Tensor avg;      // (C), m ← 0.9·m + 0.1·mean(p of the kept samples); zeros until set
  Tensor defined;  // 0-dim, 1 once m holds a value
  void clear() { avg = Tensor(), defined = Tensor(); }
};

struct EataTerms {
  Tensor loss;    // 0-dim: Σ_i kept_i · H_i / exp(H_i − E0), over max(Σ kept, 1)
  Tensor kept;    // (B) 0/1: H_i < E0 and (redundancy filter) |cos(p_i, m)| < ε
  Tensor weight;  // (B) kept_i / exp(H_i − E0), detached (the published coefficient)
};

// e_margin E0 in nats; d_margin ε < 0 turns the redundancy filter off. Updates `state` (m is
// updated only when at least one sample was kept, as published).
EataTerms eata_entropy_loss(const Tensor& logits, double e_margin, double d_margin,
                            EataState& state);

// β · Σ_p Σ_j F_pj (θ_pj − θ0_pj)² over the adapted parameters that have Fisher statistics.
Tensor fisher_penalty(const std::vector<std::string>& names, const std::vector<Tensor>& params,
                      const ActmadStats& stats, double beta);

// ---- DeYO (Lee et al., "Entropy is not Enough for Test-Time Adaptation", ICLR 2024) ----

struct DeyoTerms {
  Tensor loss;    // 0-dim: Σ_i kept_i · w_i · H_i over max(Σ kept, 1)
  Tensor plpd;    // (B) p_i[ŷ_i] − p'_i[ŷ_i], ŷ_i = argmax p_i, p' on the shuffled image
  Tensor kept;    // (B) 0/1: H_i < e_margin and PLPD_i > plpd_threshold
  Tensor weight;  // (B) kept_i · (exp(−(H_i − ent_norm)) + exp(PLPD_i)), detached
};
// logits: f(x) (with grad); shuffled_logits: f(patch_shuffle(x)) (no grad needed).
DeyoTerms deyo_loss(const Tensor& logits, const Tensor& shuffled_logits, double e_margin,
                    double plpd_threshold, double ent_norm);

// ---- MEMO (Zhang et al., "MEMO: Test Time Robustness via Adaptation and Augmentation",
//      NeurIPS 2022) ----

// logits (copies·B, C), copy-major as data::memo_augment stacks them: the marginal
// p̄_i = (1/copies)·Σ_a softmax(logits[a·B + i]), and the loss mean_i H(p̄_i). Computed in
// log space (log p̄ = logsumexp_a log p_a − log copies), so no probability underflows to log 0.
Tensor marginal_entropy(const Tensor& logits, int copies);

}  // namespace idem::it3::entropy
