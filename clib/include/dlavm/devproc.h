// DevProc's host ops in C++ (doc/devproc.md, "Ops"): one function per op of devproc/lang/ops.py that has a
// numpy kernel, with the same name and the same result bits, and the values a generated host program
// (devproc.build.cpp) passes between them.
//
// The numpy kernels are the specification: every function computes what its kernel computes, in the same
// order and precision (float32 arithmetic where numpy computes in float32, double where it computes in
// float64; this file is compiled with -ffp-contract=off), and refuses what its kernel refuses. A refusal is
// a DevprocError of one line naming the op and the rule ("embed: id 7 is outside the table's 4 rows");
// no input, however malformed (a shape that does not match its storage, a damaged .npy file), leads to an
// out-of-bounds access.
//
// Values: a String is a std::string (UTF-8), a tensor is a Tensor (dtype, shape, storage), an image is a
// dlavm::devproc::Image (dlavm/devproc_image.h: uint8 RGB [H, W, 3]), a tokenizer a dlavm::Tokenizer.
// Models and KV caches are the generated program's (it runs them through each model's generated driver).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dlavm/device.h"
#include "dlavm/devproc_image.h"
#include "dlavm/host_ops.h"
#include "dlavm/tokenizer.h"

namespace dlavm {
namespace devproc {

// A refused op, input or file: one line naming the op (or file) and the rule.
class DevprocError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The six element types of DevProc (devproc/lang/types.py), by numpy's names.
enum class DType : uint8_t { kBool, kUInt8, kInt32, kInt64, kFloat16, kFloat32 };

const char* dtype_name(DType t);                     // "bool", "uint8", "int32", "int64", "float16", "float32"
DType dtype_from_name(const std::string& name);      // DevprocError for another name
bool is_float(DType t);
size_t dtype_size(DType t);                          // bytes per element in a .npy / .bin file

// The most elements a tensor may hold (2^31), as dlavm::host::kMaxElements.
constexpr int64_t kMaxElements = int64_t(1) << 31;
// The most axes (pipeline.json's rank bound).
constexpr size_t kMaxRank = 8;

// A tensor, row-major. Float dtypes hold their values in f (a float16 value is a float exactly), the
// others in i (bool as 0/1, uint8 0..255, int32 and int64 in range): exactly one of the two is used.
struct Tensor {
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<float> f;
  std::vector<int64_t> i;

  // The element count; DevprocError for a negative size or more than kMaxElements elements.
  int64_t numel() const;
  // A tensor of `dtype` and `shape` filled with zeros (DevprocError as numel()).
  static Tensor zeros(DType dtype, std::vector<int64_t> shape);
};

// DevprocError naming `what` unless the storage of t matches its dtype and shape and every value fits its
// dtype (bool 0/1, uint8 0..255, int32's range; a float16 value representable in float16).
void check_tensor(const Tensor& t, const std::string& what);

// The shape as numpy prints it in a message: "[2, 3]".
std::string shape_str(const std::vector<int64_t>& shape);

// Conversions to and from the generated drivers' tensors (dlavm/host_ops.h: floats in f, integers in i).
host::Tensor to_host(const Tensor& t);
// `dtype`: what the values are (the entry's output dtype); values are converted as numpy's astype would.
Tensor from_host(const host::Tensor& t, DType dtype);

// .npy files (format versions 1.0, 2.0 and 3.0), untrusted: the header is parsed with every length checked
// (a Python dict literal with exactly 'descr', 'fortran_order', 'shape'), the dtype must be one of the six
// in little-endian or byte order ('|b1', '|u1', '<i4', '<i8', '<f2', '<f4'), fortran_order False, the data
// exactly the shape's size (a bool byte 0 or 1). `name` names the file in messages.
Tensor parse_npy(const std::vector<uint8_t>& bytes, const std::string& name);
Tensor read_npy(const std::string& path);             // at most 4 GiB + header; DevprocError naming the path
std::vector<uint8_t> npy_bytes(const Tensor& t);      // version 1.0, as numpy.save writes it
void write_npy(const std::string& path, const Tensor& t);

// Raw little-endian row-major bytes of `dtype` (a constant's .bin file) as a Tensor of `shape`.
Tensor tensor_from_bytes(const std::vector<uint8_t>& bytes, DType dtype, std::vector<int64_t> shape,
                         const std::string& name);

// A file of a saved pipeline: DIR/REL opened one component at a time without following a symbolic link,
// a regular file of exactly `size` bytes (checked before reading) whose sha256 is `sha256` (64 lowercase hex
// digits). DevprocError "pipeline DIR: file REL: ..." otherwise.
std::vector<uint8_t> read_pipeline_file(const std::string& dir, const std::string& rel, uint64_t size,
                                        const std::string& sha256);

// An image as a uint8 [H, W, 3] tensor and back (DevprocError for another dtype or shape).
Tensor image_to_tensor(const Image& img);
Image tensor_to_image(const Tensor& t, const std::string& what);

// ---------------------------------------------------------------------------- the ops (devproc/lang/ops.py)

// A String constant.
std::string string(const std::string& value);
// Int32 [1, n]: the tokenizer's ids of `text`.
Tensor tokenize_encode(const std::string& text, const Tokenizer& tok, bool add_special_tokens);
// The text of `ids` (an integer or bool tensor, row-major).
std::string tokenize_decode(const Tensor& ids, const Tokenizer& tok, bool skip_special_tokens);
// numpy's astype(dtype): float -> integer truncates (a value not finite or outside the dtype is refused),
// float -> bool is x != 0, integer -> narrower integer wraps, -> float16 rounds to nearest even.
Tensor to(const Tensor& x, DType dtype);
// Int64: the index of the first maximum along dim (NaN is the maximum); an empty axis is refused.
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim);
// The tensors joined along dim (one dtype and rank, equal sizes off the axis).
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor unsqueeze(const Tensor& x, int64_t dim);
// Int32 ones of x's shape.
Tensor ones_like(const Tensor& x);
// Float32 [B, H]: sum_i x[b,i,:] * m[b,i] in float32 in order i (starting from the first term), divided by
// max(sum_i m[b,i], 1e-9); zeros when n is 0.
Tensor mean_pool(const Tensor& x, const Tensor& mask);
// Float32: x / max(sqrt(s), eps), s the float64 sum of x*x along dim in index order.
Tensor l2_normalize(const Tensor& x, int64_t dim, double eps);
// Float32 [..., H]: rows of table [V, H]; an id outside [0, V) is refused naming it.
Tensor embed(const Tensor& ids, const Tensor& table);
// The image ops of dlavm/devproc_image.h as ops: load_image (its function of that name), resize with the
// op's size attribute, normalize giving a Float32 [1, 3, H, W] tensor.
Image resize(const Image& img, const std::vector<int64_t>& size, const std::string& method);
Tensor normalize(const Image& img, const std::vector<double>& mean, const std::vector<double>& std);

// ---------------------------------------------------------------------------- the generated host program
//
// devproc.build.cpp writes one straight-line program per saved pipeline (DIR/host/pipeline.cc): one call of
// an op above per node, each model run through its generated driver (DIR/models/<name>/driver/). What every
// such program shares is here: its command line, its inputs and outputs, the devices its models share, the
// KV caches and the LLM ops (prefill / decode / decode_loop: dlavm::generate, as the Python runtime).

// A bad command line (the program exits with code 2).
class UsageError : public DevprocError {
 public:
  using DevprocError::DevprocError;
};

//   pipeline DIR [--device URI] [--device NAME=URI]... [--input NAME=TEXT | NAME=@FILE]... --out OUTDIR
// --device URI: the device of every model not named by a --device NAME=URI (a URI is told from NAME=URI by
// its "://"). UsageError for anything else.
struct ProgramArgs {
  std::string dir;
  std::string out;
  std::vector<std::pair<std::string, std::string>> inputs;   // NAME, TEXT or @FILE, as given
  std::string device;                                        // for every model without its own
  std::vector<std::pair<std::string, std::string>> devices;  // NAME, URI
};
ProgramArgs parse_program_args(int argc, const char* const* argv);

// The pipeline's inputs from the command line, read as `python -m devproc.runtime` reads them (the same
// refusals, in its words): NAME=TEXT for a String; NAME=@FILE for a String's UTF-8 text (newlines
// translated as Python's text mode does), a tensor's .npy file, an Image's PNG / PPM file (or a .npy file
// uint8 [H, W, 3]). A name given twice: the last one counts.
class Inputs {
 public:
  // DevprocError for a NAME the pipeline `pipeline` has no input of (`names`, in order).
  Inputs(const ProgramArgs& args, const std::vector<std::string>& names, std::string pipeline);
  // `type` is the input's type as devproc writes it ("String", "Tensor[devproc.Int32, rank 2]", "Image").
  std::string string(const std::string& name) const;
  Tensor tensor(const std::string& name, DType dtype, size_t rank, const std::string& type) const;
  Image image(const std::string& name) const;

 private:
  const std::string& raw(const std::string& name, const std::string& type) const;
  std::vector<uint8_t> file(const std::string& name, const std::string& path) const;
  std::map<std::string, std::string> given_;
  std::string pipeline_;
};

// A saved pipeline's constant file, verified (read_pipeline_file), as a tokenizer or a tensor.
Tokenizer load_tokenizer_const(const std::string& dir, const std::string& rel, uint64_t size,
                               const std::string& sha256);
Tensor load_tensor_const(const std::string& dir, const std::string& rel, uint64_t size, const std::string& sha256,
                         DType dtype, std::vector<int64_t> shape);

// The devices of the pipeline's models: one connection per URI, shared by the models given it. A device
// holds one model's weights at a time: claim(model) before a model runs says whether its weights must be
// loaded (another model's were loaded there since), and counts the loads.
class Devices {
 public:
  // UsageError for a --device NAME=URI naming no model, or a model left without a device.
  Devices(const ProgramArgs& args, const std::vector<std::string>& models);
  Devices(const Devices&) = delete;
  Devices& operator=(const Devices&) = delete;
  dlavm::Device& device(const std::string& model);   // connected on first use
  bool claim(const std::string& model);               // true: load its weights now
  const std::string& loaded(const std::string& model) const;   // the model whose weights its device holds
  int64_t loads(const std::string& model) const;                // loads on its device so far

 private:
  struct Slot {
    std::string uri;
    std::unique_ptr<dlavm::Device> dev;
    std::string loaded;
    int64_t loads = 0;
  };
  Slot& slot(const std::string& model);
  const Slot& slot(const std::string& model) const;
  std::map<std::string, std::shared_ptr<Slot>> of_;
};

// A KVCache value: the model that filled it, the tokens it holds, and its device's load count when it was
// last used (a later load means another model overwrote the device's cache).
struct KvCache {
  std::string model;
  int64_t past = 0;
  int64_t epoch = -1;
};

// An LLM of the pipeline as the LLM ops use it: `ensure` puts its weights on its device (claim + load);
// `run` runs its entry 'logits' (true) or 'greedy' (false) on `input` (token ids int [1, n] or embeddings
// float [1, n, H]) with `ctx` tokens cached after the call (its driver's state dim).
struct Llm {
  std::string name;
  int64_t max_ctx = 0;
  int64_t vocab = 0;
  std::function<void()> ensure;
  std::function<host::Tensor(bool logits, const host::Tensor& input, int64_t ctx)> run;
};

// prefill / decode (`op` names which): Float32 [1, vocab], the logits of the last row of x after the cache's
// tokens. Refuses a cache of another model or one whose model was displaced on its device since its last use.
Tensor prefill(const Llm& m, Devices& devs, const Tensor& x, KvCache& cache, const std::string& op);

struct DecodeLoopAttrs {
  int64_t max_new_tokens = 1;
  std::vector<int64_t> eos_ids;
  double temperature = 0.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 0;
};
// decode_loop: Int32 [1, m], dlavm::generate on a new cache; with embeddings x (float [1, n, H]) the
// first call runs them and each new token's input is its row of `embedding` (float [V, H]).
Tensor decode_loop(const Llm& m, Devices& devs, const Tensor& x, KvCache& cache, const Tensor* embedding,
                   const DecodeLoopAttrs& attrs);

// A model input of the dtype its artifact takes (numpy's astype; a float given for an integer input, or the
// reverse, is refused naming argument k).
Tensor model_input(const Tensor& x, DType want, size_t k);
// A model's outputs as the pipeline's types (`model` names it in the refusal of another count).
std::vector<Tensor> model_outputs(const std::vector<host::Tensor>& outs, const std::vector<DType>& dtypes,
                                  const std::string& model);

// Rethrows `e` as the error of a node: "LOC: OP: MESSAGE" (its first line; a device's refusal with its kind).
[[noreturn]] void node_error(const std::string& loc, const std::string& op, const std::exception& e);

// OUTDIR/outputs.json and one file per output, as `python -m devproc.runtime` writes them (the same bytes):
// outputs.json [{"name": "out<k>", "kind": "string" | "tensor", "dtype", "shape", "file"}] (an image is a
// uint8 tensor), out<k>.txt (a String, UTF-8), out<k>.npy (numpy.save's bytes).
class Outputs {
 public:
  explicit Outputs(std::string dir);   // created if missing
  void add(const std::string& text);
  void add(const Tensor& t);
  void add(const Image& img);
  void finish();

 private:
  std::string dir_;
  std::vector<std::string> records_;
};

// main() of a generated program: parses the command line, runs `body` and turns every error into one line
// "error: ..." on stderr with exit code 1 (2 for a UsageError, printed with `usage`).
int program_main(int argc, const char* const* argv, const std::string& usage,
                 const std::function<void(const ProgramArgs&)>& body);

}  // namespace devproc
}  // namespace dlavm
