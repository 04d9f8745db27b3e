// `qtts parity`: our engine against a reference run of the official implementation. Prints a report on
// stdout (and --json FILE); exits 0 only when every threshold holds, 7 otherwise.
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "core/error.h"
#include "core/parity.h"

namespace qtts::cli {

namespace {

struct ParityOptions {
    std::string reference, json_out;
    ParityThresholds th;
    bool ignore_tokens = false;
};

nlohmann::json to_json(const ParityReport& r) {
    nlohmann::json items = nlohmann::json::array();
    for (const auto& p : r.items) {
        nlohmann::json d = nullptr;
        if (p.divergence)
            d = {{"frame", p.divergence->frame}, {"codebook", p.divergence->codebook}, {"ours", p.divergence->ours},
                 {"reference", p.divergence->reference},
                 {"reference_top2_gap", p.divergence->reference_top2_gap ? nlohmann::json(*p.divergence->reference_top2_gap) : nullptr},
                 {"our_top2_gap", p.divergence->our_top2_gap ? nlohmann::json(*p.divergence->our_top2_gap) : nullptr}};
        items.push_back({{"text", p.text}, {"tokens_equal", p.tokens_equal}, {"frames", p.frames},
                         {"exact_frames", p.exact_frames}, {"exact_prefix_per_codebook", p.exact_prefix_per_codebook},
                         {"divergence", d}, {"forced_steps", p.forced_steps}, {"top1_agree", p.top1_agree},
                         {"predictor_agree", p.predictor_agree}, {"worst_logit_cosine", p.worst_cosine},
                         {"worst_logit_max_abs_rel", p.worst_max_abs_rel}, {"logit_steps_compared", p.logit_steps_compared},
                         {"wav_snr_db", std::isinf(p.snr_db) ? nlohmann::json("inf") : nlohmann::json(p.snr_db)},
                         {"wav_samples_compared", p.wav_samples_compared}});
    }
    return {{"items", items}, {"failures", r.failures}, {"pass", r.failures.empty()}};
}

void run_parity_command(const CommonOptions& common, ParityOptions o) {
    if (o.ignore_tokens) o.th.require_tokens = false;
    auto model = Model::load(resolve_model_dir(common), {.device = parse_device(common.device)});
    const ReferenceFile ref = load_reference(o.reference, model->config());
    Session session(model);
    const ParityReport report = run_parity(session, ref, o.th);
    const int64_t G = model->config().talker.num_code_groups;
    fmt::print("parity: {} item(s) of {} on {} ({})\n", report.items.size(), ref.source, model->description(),
               session.backend_name());
    for (const auto& p : report.items) {
        fmt::print("\n\"{}\"\n", p.text);
        fmt::print("  tokens                 {}\n", p.tokens_equal ? "equal" : "DIFFERENT");
        fmt::print("  free-running greedy    {}/{} frames exact", p.exact_frames, p.frames);
        if (p.divergence) {
            const auto& d = *p.divergence;
            fmt::print("; first divergence at frame {} codebook {}: ours {}, reference {}", d.frame, d.codebook, d.ours,
                       d.reference);
            if (d.reference_top2_gap) fmt::print(" (reference top-2 logit gap {:.4g}{})", *d.reference_top2_gap,
                                                 *d.reference_top2_gap < 1e-3 ? ", a near-tie" : "");
            else if (d.our_top2_gap) fmt::print(" (our top-2 logit gap {:.4g}{})", *d.our_top2_gap,
                                                *d.our_top2_gap < 1e-3 ? ", a near-tie" : "");
        }
        fmt::print("\n  exact prefix per codebook {}\n", fmt::join(p.exact_prefix_per_codebook, " "));
        fmt::print("  teacher-forced c0 top-1 {}/{}\n", p.top1_agree, p.forced_steps);
        fmt::print("  teacher-forced predictor");
        for (int64_t k = 1; k < G; ++k) fmt::print(" {}", p.predictor_agree[size_t(k)]);
        fmt::print(" (of {} frames, codebooks 1..{})\n", p.frames, G - 1);
        fmt::print("  talker logits          worst cosine {:.8f}, worst max-abs {:.3g} of max |logit| ({} steps)\n",
                   p.worst_cosine, p.worst_max_abs_rel, p.logit_steps_compared);
        fmt::print("  vocoder on ref codes   SNR {:.1f} dB over {} samples\n", p.snr_db, p.wav_samples_compared);
    }
    fmt::print("\n{}\n", report.failures.empty() ? "PASS" : "FAIL");
    for (const auto& f : report.failures) fmt::print("  {}\n", f);
    if (!o.json_out.empty()) write_json_file(o.json_out, to_json(report));
    if (!report.failures.empty())
        throw CheckFailed(fmt::format("parity failed: {}", report.failures.front()),
                          "see the report above; relax a threshold only if the difference is expected (e.g. bf16 vs fp32)");
}

}  // namespace

void register_parity(CLI::App& app, const CommonOptions& common) {
    auto o = std::make_shared<ParityOptions>();
    CLI::App* sub = app.add_subcommand("parity", "Compare our tokens, codes, logits and audio with an official reference run");
    sub->add_option("--reference", o->reference, "Reference JSON (scripts/make_reference.py; fixture format)")->required();
    sub->add_option("--json", o->json_out, "Also write the report as JSON");
    sub->add_flag("--ignore-tokens", o->ignore_tokens, "Do not fail on token-id differences");
    sub->add_option("--min-exact-fraction", o->th.min_exact_fraction, "Free-running greedy: min fraction of exact frames")
        ->check(CLI::Range(0.0, 1.0))->capture_default_str();
    sub->add_option("--min-top1", o->th.min_top1, "Teacher-forced codebook-0 top-1 agreement")
        ->check(CLI::Range(0.0, 1.0))->capture_default_str();
    sub->add_option("--min-predictor", o->th.min_predictor, "Teacher-forced predictor agreement (codebooks 1..15)")
        ->check(CLI::Range(0.0, 1.0))->capture_default_str();
    sub->add_option("--min-cosine", o->th.min_cosine, "Worst talker-logit cosine over recorded steps")
        ->check(CLI::Range(-1.0, 1.0))->capture_default_str();
    sub->add_option("--min-snr-db", o->th.min_snr_db, "Vocoder waveform SNR on the reference codes")->capture_default_str();
    sub->callback([&common, o] { run_parity_command(common, *o); });
}

}  // namespace qtts::cli
