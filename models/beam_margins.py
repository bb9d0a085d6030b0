"""How far greedy and beam-search decisions are from a tie, for the fixture generators that assert their
reference token ids are robust to float rounding (generate_blip_fixtures.py, generate_llama_fixtures.py).
Only torch: importable without any script's image or tokenizer dependencies."""

import torch


class BeamMargins:
    """Wraps three beam-search helpers of one module instance (transformers 5.23 `_beam_search`) and records the
    smallest gap between the scores that decide each step, for the batch items still in play (scores below
    -1e8 are the -1e9 masks and are skipped)."""

    def __init__(self, module):
        self.margins, self.active = [], None
        topk0, upd0, heur0 = (module._get_top_k_continuations, module._update_finished_beams,
                              module._check_early_stop_heuristic)

        def gaps(v, k):
            v = v[v > -1e8].sort(descending=True).values[:k]
            if len(v) > 1:
                self.margins.append((v[:-1] - v[1:]).min().item())

        def topk(accumulated_log_probs, **kw):
            if self.active is None:
                self.active = torch.ones(kw["batch_size"], dtype=torch.bool)
            for b in range(kw["batch_size"]):
                if self.active[b]:  # the top beams_to_keep candidates and the first one left out
                    gaps(accumulated_log_probs[b], kw["beams_to_keep"] + 1)
            return topk0(accumulated_log_probs=accumulated_log_probs, **kw)

        def upd(**kw):
            just = kw["next_token_hits_stopping_criteria"] & kw["top_num_beam_mask"][None, :]
            cand = kw["topk_log_probs"] / ((kw["cur_len"] + 1 - kw["decoder_prompt_len"]) ** kw["length_penalty"])
            merged = torch.cat((kw["beam_scores"], torch.where(just, cand, torch.full_like(cand, -1e9))), dim=1)
            for b in range(merged.shape[0]):
                if self.active[b]:
                    gaps(merged[b], kw["num_beams"] + 1)
            out = upd0(**kw)
            if kw["early_stopping"] is True:
                self.active &= ~torch.all(out[3], dim=-1)
            return out

        def heur(**kw):
            out = heur0(**kw)
            lp = kw["length_penalty"]
            if kw["early_stopping"] == "never" and lp > 0.0:
                length = kw["max_length"] - kw["decoder_prompt_len"]
            else:
                length = kw["cur_len"] - kw["decoder_prompt_len"]
            best = kw["running_beam_scores"][:, 0] / (length ** lp)
            worst = kw["beam_scores"].min(dim=1).values
            for b in range(best.shape[0]):
                if self.active[b] and kw["is_sent_finished"][b].any() and best[b] > -1e8:
                    self.margins.append(abs(best[b] - worst[b]).item())
            self.active &= out[:, 0]
            return out

        module._get_top_k_continuations, module._update_finished_beams = topk, upd
        module._check_early_stop_heuristic = heur
