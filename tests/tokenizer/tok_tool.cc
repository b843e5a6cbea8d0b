// Test driver for dlavm::Tokenizer (tests/tokenizer): reads JSON, writes JSON.
//   tok_tool encode TOKENIZER INPUTS [--add-special-tokens]
//                                      INPUTS: ["text", ...]  -> [[id, ...], ...]
//   tok_tool decode TOKENIZER INPUTS [--keep-special-tokens]
//                                      INPUTS: [[id, ...], ...] -> ["text", ...]
//   tok_tool normalize TOKENIZER INPUTS INPUTS: ["text", ...]  -> ["normalized text", ...]
//   tok_tool stream TOKENIZER INPUTS   INPUTS: [[id, ...], ...] -> [["piece", ...], ...] (flush last,
//                                      empty pieces left out)
//   tok_tool split INPUTS              INPUTS: ["text", ...]  -> [["piece", ...], ...]
//   tok_tool info TOKENIZER            -> {"vocab_size": N, "bos_id": B, "eos_id": E}
// A TokenizerError prints "TokenizerError: <what>" on stderr and exits 3.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "dlavm/json.h"
#include "dlavm/tokenizer.h"

using dlavm::json::Value;

static Value read_json(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return dlavm::json::parse(ss.str());
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: tok_tool encode|decode|normalize|stream|split|info ...\n";
    return 2;
  }
  std::string cmd = argv[1];
  try {
    Value::Array out;
    if (cmd == "split") {
      Value inputs = read_json(argv[2]);
      for (const Value& text : inputs.as_array()) {
        Value::Array pieces;
        for (const std::string& p : dlavm::gpt2_split(text.as_string())) pieces.push_back(Value::string(p));
        out.push_back(Value::array(pieces));
      }
      std::cout << Value::array(out).dump() << "\n";
      return 0;
    }
    dlavm::Tokenizer tok = dlavm::Tokenizer::from_file(argv[2]);
    if (cmd == "info") {
      std::cout << Value::object({{"vocab_size", Value::integer(static_cast<int64_t>(tok.vocab_size()))},
                                  {"bos_id", Value::integer(tok.bos_id())},
                                  {"eos_id", Value::integer(tok.eos_id())}})
                       .dump()
                << "\n";
      return 0;
    }
    if (argc < 4) return 2;
    Value inputs = read_json(argv[3]);
    const std::string flag = argc > 4 ? argv[4] : "";
    if (cmd == "encode" && (flag.empty() || flag == "--add-special-tokens")) {
      for (const Value& text : inputs.as_array()) {
        Value::Array ids;
        for (int32_t id : tok.encode(text.as_string(), !flag.empty())) ids.push_back(Value::integer(id));
        out.push_back(Value::array(ids));
      }
    } else if (cmd == "decode" && (flag.empty() || flag == "--keep-special-tokens")) {
      for (const Value& seq : inputs.as_array()) {
        std::vector<int32_t> ids;
        for (const Value& id : seq.as_array()) ids.push_back(static_cast<int32_t>(id.as_int()));
        out.push_back(Value::string(tok.decode(ids, flag.empty())));
      }
    } else if (cmd == "normalize") {
      for (const Value& text : inputs.as_array()) out.push_back(Value::string(tok.normalize(text.as_string())));
    } else if (cmd == "stream") {
      for (const Value& seq : inputs.as_array()) {
        dlavm::TokenizerDecodeStream stream(tok);
        Value::Array pieces;
        for (const Value& id : seq.as_array()) {
          std::string piece = stream.step(static_cast<int32_t>(id.as_int()));
          if (!piece.empty()) pieces.push_back(Value::string(piece));
        }
        std::string tail = stream.flush();
        if (!tail.empty()) pieces.push_back(Value::string(tail));
        out.push_back(Value::array(pieces));
      }
    } else {
      std::cerr << "unknown command or flag: " << cmd << " " << flag << "\n";
      return 2;
    }
    std::cout << Value::array(out).dump() << "\n";
  } catch (const dlavm::TokenizerError& e) {
    std::cerr << "TokenizerError: " << e.what() << "\n";
    return 3;
  }
  return 0;
}
