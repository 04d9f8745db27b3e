// `qtts tokenize`: prints token ids as JSON for debugging prompts. Plain mode shows how the user's text
// is tokenized (literal special tokens stay text, as in `speak`); --wrap shows the whole talker prompt.
#include <memory>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli/common.h"
#include "core/engine.h"
#include "core/error.h"

namespace qtts::cli {

namespace {

struct TokenizeOptions {
    std::string text, file;
    bool wrap = false, pieces = false;
};

void run_tokenize(const CommonOptions& common, const TokenizeOptions& o) {
    const std::string text = read_text_input(o.text, o.file);
    const Tokenizer tokenizer = Tokenizer::from_directory(resolve_model_dir(common));
    std::vector<int32_t> ids = tokenizer.encode(text, Tokenizer::Specials::as_text);
    if (o.wrap) ids = wrap_prompt_ids(tokenizer, ids);
    if (!o.pieces) {
        fmt::print("[{}]\n", fmt::join(ids, ", "));
        return;
    }
    fmt::print("[");
    for (size_t i = 0; i < ids.size(); ++i) {
        std::string piece;
        for (char c : tokenizer.token_piece(ids[i])) {
            if (c == '"' || c == '\\') piece.push_back('\\');
            piece.push_back(c);
        }
        fmt::print("{}[{}, \"{}\"]", i ? ", " : "", ids[i], piece);
    }
    fmt::print("]\n");
}

}  // namespace

void register_tokenize(CLI::App& app, const CommonOptions& common) {
    auto o = std::make_shared<TokenizeOptions>();
    CLI::App* sub = app.add_subcommand("tokenize", "Print the token ids of a text as JSON");
    sub->add_option("text", o->text, "Text to tokenize (omit, or '-', to read -f FILE or stdin)");
    sub->add_option("-f,--file", o->file, "Read the text from FILE ('-' = stdin)");
    sub->add_flag("--wrap", o->wrap, "Show the full talker prompt ids (<|im_start|>assistant\\n ... )");
    sub->add_flag("--pieces", o->pieces, "Print [id, \"piece\"] pairs instead of bare ids");
    sub->callback([&common, o] { run_tokenize(common, *o); });
}

}  // namespace qtts::cli
