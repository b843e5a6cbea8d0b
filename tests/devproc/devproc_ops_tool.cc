// Test driver of clib's DevProc ops (dlavm/devproc.h), built by tests/devproc/test_cpp_ops.py in the
// release and sanitizer flavours.
//
//   devproc_ops_tool CASES.json RESULTS.json
//
// CASES.json is a list of {"op": NAME, "attrs": {...}, "args": [ARG...], "out": PREFIX}, ARG one of
// {"npy": PATH} (a tensor), {"str": TEXT}, {"tokenizer": PATH} (a tokenizer.json), {"image": PATH} (a uint8
// [H, W, 3] .npy), {"list": [ARG...]} (concat's tensors). NAME is an op of devproc.h, or "read_npy" (parse
// the .npy file and write it back: the parser on untrusted bytes). Each case's result is written to
// PREFIX.npy (a tensor or image) or PREFIX.txt (a String); RESULTS.json gets one entry per case:
// {"ok": true, "kind": "tensor" | "string" | "image"} or {"ok": false, "error": MESSAGE}. Exit 0 unless the
// cases file itself cannot be read.
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "dlavm/devproc.h"
#include "dlavm/json.h"

using dlavm::json::Value;
namespace dp = dlavm::devproc;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Result {
  std::string kind;
  dp::Tensor tensor;
  std::string text;
};

std::map<std::string, std::shared_ptr<dlavm::Tokenizer>> g_tokenizers;

const dlavm::Tokenizer& tokenizer(const Value& arg) {
  const std::string path = arg.at("tokenizer").as_string();
  auto it = g_tokenizers.find(path);
  if (it == g_tokenizers.end())
    it = g_tokenizers.emplace(path, std::make_shared<dlavm::Tokenizer>(dlavm::Tokenizer::from_file(path))).first;
  return *it->second;
}

dp::Tensor tensor(const Value& arg) { return dp::read_npy(arg.at("npy").as_string()); }
dp::Image image(const Value& arg) { return dp::tensor_to_image(dp::read_npy(arg.at("image").as_string()), "image"); }

std::vector<int64_t> ints(const Value& v) {
  std::vector<int64_t> out;
  for (const Value& x : v.as_array()) out.push_back(x.as_int());
  return out;
}

std::vector<double> doubles(const Value& v) {
  std::vector<double> out;
  for (const Value& x : v.as_array()) out.push_back(x.as_double());
  return out;
}

Result run(const Value& c) {
  const std::string op = c.at("op").as_string();
  const Value& a = c.at("attrs");
  const Value& args = c.at("args");
  Result r;
  r.kind = "tensor";
  if (op == "read_npy") {
    r.tensor = tensor(args.at(0));
  } else if (op == "string") {
    r.kind = "string";
    r.text = dp::string(a.at("value").as_string());
  } else if (op == "tokenize_encode") {
    r.tensor = dp::tokenize_encode(args.at(0).at("str").as_string(), tokenizer(args.at(1)),
                                   a.at("add_special_tokens").as_bool());
  } else if (op == "tokenize_decode") {
    r.kind = "string";
    r.text = dp::tokenize_decode(tensor(args.at(0)), tokenizer(args.at(1)), a.at("skip_special_tokens").as_bool());
  } else if (op == "to") {
    r.tensor = dp::to(tensor(args.at(0)), dp::dtype_from_name(a.at("dtype").as_string()));
  } else if (op == "argmax") {
    r.tensor = dp::argmax(tensor(args.at(0)), a.at("dim").as_int(), a.at("keepdim").as_bool());
  } else if (op == "concat") {
    std::vector<dp::Tensor> xs;
    for (const Value& x : args.at(0).at("list").as_array()) xs.push_back(tensor(x));
    r.tensor = dp::concat(xs, a.at("dim").as_int());
  } else if (op == "transpose") {
    r.tensor = dp::transpose(tensor(args.at(0)), a.at("dim0").as_int(), a.at("dim1").as_int());
  } else if (op == "unsqueeze") {
    r.tensor = dp::unsqueeze(tensor(args.at(0)), a.at("dim").as_int());
  } else if (op == "ones_like") {
    r.tensor = dp::ones_like(tensor(args.at(0)));
  } else if (op == "mean_pool") {
    r.tensor = dp::mean_pool(tensor(args.at(0)), tensor(args.at(1)));
  } else if (op == "l2_normalize") {
    r.tensor = dp::l2_normalize(tensor(args.at(0)), a.at("dim").as_int(), a.at("eps").as_double());
  } else if (op == "embed") {
    r.tensor = dp::embed(tensor(args.at(0)), tensor(args.at(1)));
  } else if (op == "load_image") {
    r.kind = "image";
    r.tensor = dp::image_to_tensor(dp::load_image(args.at(0).at("str").as_string()));
  } else if (op == "resize") {
    r.kind = "image";
    r.tensor = dp::image_to_tensor(dp::resize(image(args.at(0)), ints(a.at("size")), a.at("method").as_string()));
  } else if (op == "normalize") {
    r.tensor = dp::normalize(image(args.at(0)), doubles(a.at("mean")), doubles(a.at("std")));
  } else {
    throw std::runtime_error("unknown op " + op);
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: devproc_ops_tool CASES.json RESULTS.json\n";
    return 2;
  }
  Value cases;
  try {
    cases = dlavm::json::parse(slurp(argv[1]));
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  std::string out = "[";
  for (size_t k = 0; k < cases.size(); ++k) {
    const Value& c = cases.at(k);
    std::string entry;
    try {
      Result r = run(c);
      const std::string prefix = c.at("out").as_string();
      if (r.kind == "string") {
        std::ofstream f(prefix + ".txt", std::ios::binary);
        f << r.text;
      } else {
        dp::write_npy(prefix + ".npy", r.tensor);
      }
      entry = "{\"ok\":true,\"kind\":\"" + r.kind + "\"}";
    } catch (const std::exception& e) {
      entry = "{\"ok\":false,\"error\":\"" + dlavm::json::escape(e.what()) + "\"}";
    }
    out += (k ? "," : "") + entry;
  }
  out += "]";
  std::ofstream(argv[2], std::ios::binary) << out;
  return 0;
}
