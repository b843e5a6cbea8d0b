#include "server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <system_error>
#include <thread>

#include "dlavm/artifact.h"
#include "dlavm/device.h"
#include "dlavm/json.h"
#include "dlavm/llm.h"
#include "dlavm/serve_protocol.h"
#include "dlavm/tokenizer.h"
#include "frames.h"
#include "request.h"
#include "stop_filter.h"
#include "timing_device.h"

namespace dlavm {
namespace serve {

// ---------------------------------------------------------------- command line

std::string usage() {
  return "usage: dlavm-server --artifact DIR --device URI [--host 127.0.0.1] [--port 0] [--port-file FILE]\n"
         "                    [--token-file FILE | --token SECRET] [--max-queue 64] [--max-clients 64]\n"
         "                    [--max-frame 1048576] [--frame-timeout 10] [--idle-timeout 600] [--send-timeout 10]\n"
         "Serves the LLM artifact DIR (whose generated driver this program was linked with) on the device\n"
         "URI (sim://HOST:PORT) over the serving protocol of doc/serve.md. A --host that is not a loopback\n"
         "address needs a token. The token (the secret clients present) is the first line of --token-file\n"
         "FILE (at most 4096 bytes), else --token SECRET, else $" + std::string(kTokenEnv) + " when neither is\n"
         "given; --token shows the secret to every user of this host (ps). Timeouts are in seconds.\n";
}

namespace {

int64_t int_option(const std::string& opt, const std::string& v, int64_t lo, int64_t hi) {
  size_t used = 0;
  long long x = 0;
  try {
    x = std::stoll(v, &used, 10);
  } catch (const std::exception&) {
    used = 0;
  }
  if (v.empty() || used != v.size() || x < lo || x > hi)
    throw StartupError(opt + " " + quoted(v) + " is not an integer in " + std::to_string(lo) + ".." +
                       std::to_string(hi));
  return x;
}

double seconds_option(const std::string& opt, const std::string& v) {
  size_t used = 0;
  double x = 0;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (v.empty() || used != v.size() || !std::isfinite(x) || x <= 0 || x > 1e6)
    throw StartupError(opt + " " + quoted(v) + " is not a number of seconds in (0, 1000000]");
  return x;
}

// The secret of --token-file: the file's first line, without its line end ("\n" or "\r\n"). The file
// may be a regular file or a pipe (--token-file <(...)) of at most kMaxTokenFileBytes bytes.
std::string read_token_file(const std::string& path) {
  const std::string name = "--token-file " + quoted(path, 4096);  // the whole path: it names the file
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);  // a FIFO without writer: no wait
  if (fd < 0) throw StartupError(name + " cannot be read: " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw StartupError(name + " cannot be read: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode))
    throw StartupError(name + " cannot be read: it is " + (S_ISDIR(st.st_mode) ? "a directory" : "not a file") +
                       " (give a file whose first line is the secret)");
  const std::string too_large = name + " holds more than " + std::to_string(kMaxTokenFileBytes) +
                                " bytes: a token file holds one line, the secret";
  if (S_ISREG(st.st_mode) && st.st_size > static_cast<off_t>(kMaxTokenFileBytes)) throw StartupError(too_large);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  std::string data;
  char buf[1024];
  while (data.size() <= kMaxTokenFileBytes) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw StartupError(name + " cannot be read: " + std::strerror(errno));
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  if (data.size() > kMaxTokenFileBytes) throw StartupError(too_large);
  std::string secret = data.substr(0, data.find('\n'));
  if (secret.size() < data.size() && !secret.empty() && secret.back() == '\r') secret.pop_back();
  if (secret.empty())
    throw StartupError(name + ": the secret (the file's first line) is empty; write it on the first line");
  return secret;
}

}  // namespace

ServerConfig parse_args(const std::vector<std::string>& args, bool& help, const char* env_token) {
  ServerConfig c;
  help = false;
  bool have_artifact = false, have_device = false, have_token = false;
  std::string token_file;
  bool have_token_file = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string opt = args[i], val;
    if (opt == "-h" || opt == "--help") {
      help = true;
      return c;
    }
    const size_t eq = opt.find('=');
    const bool inline_val = opt.rfind("--", 0) == 0 && eq != std::string::npos;
    if (inline_val) {
      val = opt.substr(eq + 1);
      opt = opt.substr(0, eq);
    }
    static const char* const kOpts[] = {"--artifact",    "--device",       "--host",          "--port",
                                        "--port-file",   "--token",        "--token-file",    "--max-queue",
                                        "--max-clients", "--max-frame",    "--frame-timeout", "--idle-timeout",
                                        "--send-timeout"};
    bool known = false;
    for (const char* k : kOpts) known = known || opt == k;
    if (!known) throw StartupError("unknown argument " + quoted(opt) + " (see --help)");
    if (!inline_val) {
      if (i + 1 >= args.size()) throw StartupError(opt + " needs a value");
      val = args[++i];
    }
    if (opt == "--artifact") {
      c.artifact = val;
      have_artifact = true;
    } else if (opt == "--device") {
      c.device = val;
      have_device = true;
    } else if (opt == "--host") {
      if (val.empty()) throw StartupError("--host is empty");
      c.host = val;
    } else if (opt == "--port") {
      c.port = static_cast<int>(int_option(opt, val, 0, 65535));
    } else if (opt == "--port-file") {
      c.port_file = val;
    } else if (opt == "--token") {
      if (val.empty()) throw StartupError("--token is empty (give a secret, or leave the option out)");
      c.token = val;
      have_token = true;
    } else if (opt == "--token-file") {
      if (val.empty()) throw StartupError("--token-file is empty (give the file whose first line is the secret)");
      token_file = val;
      have_token_file = true;
    } else if (opt == "--max-queue") {
      c.max_queue = int_option(opt, val, 1, 1 << 20);
    } else if (opt == "--max-clients") {
      c.max_clients = int_option(opt, val, 1, 4096);
    } else if (opt == "--max-frame") {
      c.max_frame = static_cast<uint32_t>(int_option(opt, val, kMinMaxFrame, kMaxMaxFrame));
    } else if (opt == "--frame-timeout") {
      c.frame_timeout_s = seconds_option(opt, val);
    } else if (opt == "--idle-timeout") {
      c.idle_timeout_s = seconds_option(opt, val);
    } else if (opt == "--send-timeout") {
      c.send_timeout_s = seconds_option(opt, val);
    }
  }
  if (!have_artifact) throw StartupError("--artifact DIR is required (see --help)");
  if (!have_device) throw StartupError("--device URI is required (see --help)");
  if (have_token && have_token_file)
    throw StartupError("--token and --token-file " + quoted(token_file, 4096) +
                       " both give the secret: give one of them (--token-file keeps it off the command line)");
  if (have_token_file)
    c.token = read_token_file(token_file);
  else if (!have_token && env_token != nullptr && env_token[0] != '\0')
    c.token = env_token;  // an empty variable counts as unset
  return c;
}

// ---------------------------------------------------------------- the server

namespace {

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

double round3(double x) { return std::round(x * 1000.0) / 1000.0; }

std::string fmt(double x, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, x);
  return buf;
}

// Constant-time comparison (in the secret's length): the time does not tell how much of it matched.
bool same_secret(const std::string& given, const std::string& secret) {
  unsigned diff = given.size() == secret.size() ? 0u : 1u;
  for (size_t i = 0; i < secret.size(); ++i) {
    const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff |= g ^ static_cast<unsigned char>(secret[i]);
  }
  return diff == 0;
}

bool is_loopback(const sockaddr* sa) {
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return true;
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) return in6->sin6_addr.s6_addr[12] == 127;
  }
  return false;
}

struct Job;

struct Conn {
  Conn(int fd_, uint64_t num_) : fd(fd_), num(num_) {}
  ~Conn() { ::close(fd); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  const int fd;
  const uint64_t num;
  std::mutex write_mu;          // one frame at a time
  std::atomic<bool> dead{false};  // a send failed or the connection ended: nothing more is sent
  std::mutex mu;                // guards job
  std::shared_ptr<Job> job;     // the connection's request, queued or running
};

struct Job {
  std::shared_ptr<Conn> conn;
  Request req;
  Clock::time_point enqueued;
  std::atomic<bool> cancel{false};
  std::atomic<bool> gone{false};  // the client disconnected: no DONE
};

struct Stats {
  uint64_t requests = 0, completed = 0, cancelled = 0, prompt_tokens = 0, new_tokens = 0, device_reconnects = 0;
  double sim_ms = 0, host_ms = 0, host_overhead_ms = 0;
  std::map<std::string, uint64_t> errors;
};

struct ConnThread {
  std::shared_ptr<Conn> conn;
  std::shared_ptr<std::atomic<bool>> done;
  std::thread thread;
};

class Server {
 public:
  explicit Server(const ServerConfig& cfg) : cfg_(cfg), art_(open_artifact(cfg.artifact)) {}
  int run();

 private:
  static Artifact open_artifact(const std::string& dir) { return Artifact::open(dir); }
  void load_tokenizer();
  void connect_device();  // open_device + make_llm_model + load_weights; throws
  void mark_down(const std::string& why);
  std::string welcome_payload() const;
  int listen_socket(std::string& shown_addr);

  void accept_loop(int lfd, int wake_fd);
  void serve_conn(const std::shared_ptr<Conn>& c);
  bool handle_frame(const std::shared_ptr<Conn>& c, const Frame& f, bool& hello_done);
  void handle_generate(const std::shared_ptr<Conn>& c, const json::Value& obj);
  void cancel_conn_job(const std::shared_ptr<Conn>& c, bool disconnected);
  void worker_loop();
  void run_job(Job& job);
  struct Running;  // a request of the batched loop
  void batch_loop();
  void start_batched(const std::shared_ptr<Job>& job, BatchDecoder& bd, std::vector<std::shared_ptr<Running>>& run);
  void finish_batched(Running& a);

  bool send(Conn& c, uint8_t type, const std::string& payload);
  void send_error(Conn& c, bool has_id, uint32_t id, const std::string& kind, const std::string& message);
  void send_done(Job& job, const std::string& reason, int64_t new_tokens, const std::string& tail, bool has_seed,
                 uint64_t seed, bool has_sim, double sim_ms, double host_ms, double queue_ms);
  void graceful_close(Conn& c);
  void log(const std::string& line);
  std::string stats_payload();
  std::string health_payload();

  const ServerConfig cfg_;
  Artifact art_;
  std::unique_ptr<Tokenizer> tok_;
  std::string chat_template_;
  bool has_chat_template_ = false;
  ModelFacts facts_;
  double clock_mhz_ = 0;
  std::string welcome_;

  // The device: used by the start-up code, then by the worker thread only.
  std::unique_ptr<Device> dev_;
  std::unique_ptr<TimingDevice> timing_;
  std::unique_ptr<LlmModel> model_;

  std::atomic<bool> stopping_{false};
  std::atomic<bool> device_down_{false};
  std::atomic<bool> running_{false};
  std::atomic<uint64_t> next_conn_{0};
  Clock::time_point started_ = Clock::now();

  std::mutex q_mu_;
  std::condition_variable q_cv_;
  std::deque<std::shared_ptr<Job>> queue_;

  std::mutex c_mu_;
  std::list<ConnThread> conns_;

  std::mutex s_mu_;
  Stats stats_;

  std::mutex log_mu_;
};

void Server::log(const std::string& line) {
  std::lock_guard<std::mutex> lk(log_mu_);
  std::fprintf(stderr, "dlavm-server: %s\n", line.c_str());
  std::fflush(stderr);
}

void Server::load_tokenizer() {
  const json::Value* t = art_.manifest().find("tokenizer");
  if (!t || t->is_null()) return;  // token ids only
  const std::string file = t->at("file").as_string();
  const std::vector<uint8_t> bytes = art_.read_file(file);
  tok_ = std::make_unique<Tokenizer>(
      Tokenizer::from_json(std::string(bytes.begin(), bytes.end()), art_.dir() + "/" + file));
  const json::Value& bos = t->at("bos_id");
  facts_.has_bos = !bos.is_null();
  if (facts_.has_bos) facts_.bos_id = static_cast<int32_t>(bos.as_int());
  for (const json::Value& e : t->at("eos_ids").as_array()) facts_.eos_ids.push_back(static_cast<int32_t>(e.as_int()));
  facts_.add_bos = t->at("add_bos").as_bool();
  const json::Value& ct = t->at("chat_template");
  if (!ct.is_null()) {
    const std::vector<uint8_t> text = art_.read_file(ct.as_string());
    chat_template_.assign(text.begin(), text.end());
    if (!valid_utf8(chat_template_))
      throw StartupError("artifact " + art_.dir() + ": the chat template " + ct.as_string() + " is not UTF-8");
    has_chat_template_ = true;
  }
  size_t longest = 4;
  for (size_t i = 0; i < tok_->vocab_size(); ++i)
    longest = std::max(longest, tok_->id_to_token(static_cast<int32_t>(i)).size());
  facts_.max_token_bytes = longest;
}

void Server::connect_device() {
  model_.reset();
  timing_.reset();
  dev_.reset();
  std::unique_ptr<Device> dev = open_device(cfg_.device);
  auto timing = std::make_unique<TimingDevice>(*dev);
  std::unique_ptr<LlmModel> model = make_llm_model(*timing, art_);
  model->load_weights();
  dev_ = std::move(dev);
  timing_ = std::move(timing);
  model_ = std::move(model);
  device_down_ = false;
}

void Server::mark_down(const std::string& why) {
  model_.reset();
  timing_.reset();
  dev_.reset();
  device_down_ = true;
  log("device " + cfg_.device + " is down (" + why + "); the next request reconnects");
}

std::string Server::welcome_payload() const {
  const json::Value& m = art_.manifest();
  json::Value::Array eos;
  for (int32_t e : facts_.eos_ids) eos.push_back(json::Value::integer(e));
  auto token_text = [&](bool has, int32_t id) {
    if (!tok_ || !has || id < 0 || static_cast<size_t>(id) >= tok_->vocab_size()) return json::Value();
    return json::Value::string(utf8_or_replaced(tok_->id_to_token(id)));
  };
  json::Value::Object o;
  o.emplace_back("protocol", json::Value::integer(kProtocolVersion));
  o.emplace_back("model", json::Value::string(m.at("model").as_string()));
  o.emplace_back("target", json::Value::string(m.at("target").at("name").as_string()));
  o.emplace_back("max_ctx", json::Value::integer(facts_.max_ctx));
  o.emplace_back("vocab", json::Value::integer(facts_.vocab));
  o.emplace_back("max_frame", json::Value::integer(cfg_.max_frame));
  o.emplace_back("max_queue", json::Value::integer(cfg_.max_queue));
  o.emplace_back("tokenizer", json::Value::boolean(tok_ != nullptr));
  o.emplace_back("bos_id", facts_.has_bos ? json::Value::integer(facts_.bos_id) : json::Value());
  o.emplace_back("eos_ids", json::Value::array(eos));
  o.emplace_back("add_bos", json::Value::boolean(facts_.add_bos && facts_.has_bos));
  o.emplace_back("bos_token", token_text(facts_.has_bos, facts_.bos_id));
  o.emplace_back("eos_token", token_text(!facts_.eos_ids.empty(), facts_.eos_ids.empty() ? 0 : facts_.eos_ids[0]));
  o.emplace_back("chat_template", has_chat_template_ ? json::Value::string(chat_template_) : json::Value());
  return json::Value::object(o).dump();
}

int Server::listen_socket(std::string& shown_addr) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(cfg_.port);
  const int rc = ::getaddrinfo(cfg_.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) throw StartupError("--host " + quoted(cfg_.host) + ": cannot resolve it: " + gai_strerror(rc));
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> guard(res, ::freeaddrinfo);
  for (addrinfo* ai = res; ai; ai = ai->ai_next)
    if (!is_loopback(ai->ai_addr) && cfg_.token.empty())
      throw StartupError("--host " + cfg_.host +
                         " is not a loopback address: serving other machines needs a token (--token-file FILE, $" +
                         kTokenEnv + " or --token SECRET)");
  std::string last = "no address";
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last = std::strerror(errno);
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
      char host[NI_MAXHOST] = "?", serv[NI_MAXSERV] = "?";
      ::getnameinfo(reinterpret_cast<sockaddr*>(&ss), len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV);
      shown_addr = ss.ss_family == AF_INET6 ? "[" + std::string(host) + "]:" + serv : std::string(host) + ":" + serv;
      return fd;
    }
    last = std::strerror(errno);
    ::close(fd);
  }
  throw StartupError("cannot listen on " + cfg_.host + ":" + port + ": " + last);
}

bool Server::send(Conn& c, uint8_t type, const std::string& payload) {
  if (c.dead.load()) return false;
  const std::string data = encode_frame(type, payload);
  std::lock_guard<std::mutex> lk(c.write_mu);
  if (c.dead.load()) return false;
  if (!send_all(c.fd, data, Clock::now() + seconds(cfg_.send_timeout_s))) {
    c.dead = true;
    ::shutdown(c.fd, SHUT_RDWR);  // the connection's thread sees it end and cancels its request
    return false;
  }
  return true;
}

void Server::send_error(Conn& c, bool has_id, uint32_t id, const std::string& kind, const std::string& message) {
  {
    std::lock_guard<std::mutex> lk(s_mu_);
    ++stats_.errors[kind];
  }
  json::Value::Object o;
  o.emplace_back("id", has_id ? json::Value::integer(id) : json::Value());
  o.emplace_back("kind", json::Value::string(kind));
  o.emplace_back("message", json::Value::string(utf8_or_replaced(message)));
  send(c, ERROR, json::Value::object(o).dump());
}

void Server::send_done(Job& job, const std::string& reason, int64_t new_tokens, const std::string& tail,
                       bool has_seed, uint64_t seed, bool has_sim, double sim_ms, double host_ms, double queue_ms) {
  json::Value::Object o;
  o.emplace_back("id", json::Value::integer(job.req.id));
  o.emplace_back("stop_reason", json::Value::string(reason));
  o.emplace_back("prompt_tokens", json::Value::integer(static_cast<int64_t>(job.req.prompt.size())));
  o.emplace_back("new_tokens", json::Value::integer(new_tokens));
  o.emplace_back("text_tail", json::Value::string(tail));
  o.emplace_back("seed", has_seed ? json::Value::integer(static_cast<int64_t>(seed)) : json::Value());
  o.emplace_back("sim_ms", has_sim ? json::Value::number(round3(sim_ms)) : json::Value());
  o.emplace_back("host_ms", json::Value::number(round3(host_ms)));
  o.emplace_back("queue_ms", json::Value::number(round3(queue_ms)));
  send(*job.conn, DONE, json::Value::object(o).dump());
}

std::string Server::health_payload() {
  size_t queued;
  {
    std::lock_guard<std::mutex> lk(q_mu_);
    queued = queue_.size();
  }
  json::Value::Object o;
  o.emplace_back("status", json::Value::string(device_down_.load() ? "device_down" : "ok"));
  o.emplace_back("queue", json::Value::integer(static_cast<int64_t>(queued)));
  o.emplace_back("running", json::Value::boolean(running_.load()));
  return json::Value::object(o).dump();
}

std::string Server::stats_payload() {
  size_t queued, conns = 0;
  {
    std::lock_guard<std::mutex> lk(q_mu_);
    queued = queue_.size();
  }
  {
    std::lock_guard<std::mutex> lk(c_mu_);
    for (const ConnThread& t : conns_) conns += t.done->load() ? 0 : 1;
  }
  std::lock_guard<std::mutex> lk(s_mu_);
  json::Value::Object errors;
  for (const char* k : kErrorKinds) {
    auto it = stats_.errors.find(k);
    errors.emplace_back(k, json::Value::integer(static_cast<int64_t>(it == stats_.errors.end() ? 0 : it->second)));
  }
  auto n = [](uint64_t v) { return json::Value::integer(static_cast<int64_t>(v)); };
  json::Value::Object o;
  o.emplace_back("uptime_s", json::Value::number(round3(ms_between(started_, Clock::now()) / 1000.0)));
  o.emplace_back("requests", n(stats_.requests));
  o.emplace_back("completed", n(stats_.completed));
  o.emplace_back("cancelled", n(stats_.cancelled));
  o.emplace_back("errors", json::Value::object(errors));
  o.emplace_back("prompt_tokens", n(stats_.prompt_tokens));
  o.emplace_back("new_tokens", n(stats_.new_tokens));
  o.emplace_back("sim_ms", json::Value::number(round3(stats_.sim_ms)));
  o.emplace_back("host_ms", json::Value::number(round3(stats_.host_ms)));
  o.emplace_back("host_overhead_ms", json::Value::number(round3(stats_.host_overhead_ms)));
  o.emplace_back("queue", n(queued));
  o.emplace_back("connections", n(conns));
  o.emplace_back("device_reconnects", n(stats_.device_reconnects));
  return json::Value::object(o).dump();
}

// Send what is pending, then stop reading: the peer gets the last frame before the connection ends
// (closing with unread input would reset the connection and could discard it).
void Server::graceful_close(Conn& c) {
  c.dead = true;
  ::shutdown(c.fd, SHUT_WR);
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(500);
  char buf[16384];
  size_t drained = 0;
  while (drained < (4u << 20) && !stopping_.load()) {
    if (wait_readable(c.fd, deadline, stopping_) != ReadStatus::kOk) break;
    const ssize_t k = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
    if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (k <= 0) break;
    drained += static_cast<size_t>(k);
  }
  ::shutdown(c.fd, SHUT_RDWR);
}

// ---------------------------------------------------------------- connections

void Server::accept_loop(int lfd, int wake_fd) {
  for (;;) {
    pollfd p[2] = {{lfd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    const int r = ::poll(p, 2, 1000);
    if (stopping_.load() || (r > 0 && p[1].revents)) return;
    {  // reap the threads of ended connections
      std::lock_guard<std::mutex> lk(c_mu_);
      for (auto it = conns_.begin(); it != conns_.end();) {
        if (it->done->load()) {
          it->thread.join();
          it = conns_.erase(it);
        } else {
          ++it;
        }
      }
    }
    if (r <= 0 || !(p[0].revents & POLLIN)) continue;
    const int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto conn = std::make_shared<Conn>(fd, ++next_conn_);
    std::lock_guard<std::mutex> lk(c_mu_);
    if (static_cast<int64_t>(conns_.size()) >= cfg_.max_clients) {
      // Sent without waiting: a small frame fits the empty send buffer of a new connection.
      {
        std::lock_guard<std::mutex> sk(s_mu_);
        ++stats_.errors["busy"];
      }
      json::Value::Object o;
      o.emplace_back("id", json::Value());
      o.emplace_back("kind", json::Value::string("busy"));
      o.emplace_back("message", json::Value::string("the server serves its maximum of " +
                                                    std::to_string(cfg_.max_clients) + " connections"));
      send_all(fd, encode_frame(ERROR, json::Value::object(o).dump()), Clock::now());
      ::shutdown(fd, SHUT_WR);
      continue;  // conn's destructor closes fd
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    conns_.push_back(ConnThread{conn, done, std::thread()});
    try {
      conns_.back().thread = std::thread([this, conn, done] {
        serve_conn(conn);
        *done = true;
      });
    } catch (const std::system_error& e) {  // no thread to be had: the connection is closed
      conns_.pop_back();
      log(std::string("cannot start a connection thread: ") + e.what());
    }
  }
}

void Server::serve_conn(const std::shared_ptr<Conn>& c) {
  const Clock::time_point connected = Clock::now();
  Clock::time_point last_active = connected;
  bool hello_done = false;
  bool graceful = true;
  Frame f;
  try {
    for (;;) {
      // Wait for the next frame's first byte: HELLO within --frame-timeout of connecting; later frames
      // within --idle-timeout of the last activity while no request is in flight.
      ReadStatus w;
      for (;;) {
        bool in_flight;
        {
          std::lock_guard<std::mutex> lk(c->mu);
          in_flight = c->job != nullptr;
        }
        const Clock::time_point now = Clock::now();
        if (in_flight) last_active = now;
        const Clock::time_point deadline =
            !hello_done ? connected + seconds(cfg_.frame_timeout_s) : last_active + seconds(cfg_.idle_timeout_s);
        w = wait_readable(c->fd, std::min(deadline, now + std::chrono::milliseconds(250)), stopping_);
        if (w != ReadStatus::kTimeout || Clock::now() >= deadline) break;
      }
      if (w == ReadStatus::kTimeout) {
        if (!hello_done)
          send_error(*c, false, 0, "bad_frame",
                     "no HELLO within " + fmt(cfg_.frame_timeout_s, 1) + " s of connecting (--frame-timeout)");
        break;  // an idle connection is closed without a word
      }
      if (w != ReadStatus::kOk) {
        graceful = false;
        break;
      }
      // A frame must be complete --frame-timeout after its first byte; HELLO that long after connecting.
      const Clock::time_point frame_deadline = (hello_done ? Clock::now() : connected) + seconds(cfg_.frame_timeout_s);
      const ReadStatus s = read_frame(c->fd, cfg_.max_frame, frame_deadline, stopping_, f);
      if (s == ReadStatus::kZero) {
        send_error(*c, false, 0, "bad_frame", "a frame length of 0: a frame holds at least its type byte");
        break;
      }
      if (s == ReadStatus::kTooLarge) {
        send_error(*c, false, 0, "too_large",
                   "a frame of " + std::to_string(f.length) + " bytes is above this server's limit of " +
                       std::to_string(cfg_.max_frame) + " bytes (--max-frame; WELCOME's max_frame)");
        break;
      }
      if (s == ReadStatus::kTimeout) {
        send_error(*c, false, 0, "bad_frame",
                   hello_done ? "a frame not complete within " + fmt(cfg_.frame_timeout_s, 1) +
                                    " s of its first byte (--frame-timeout)"
                              : "no complete HELLO within " + fmt(cfg_.frame_timeout_s, 1) +
                                    " s of connecting (--frame-timeout)");
        break;
      }
      if (s != ReadStatus::kOk) {
        graceful = false;
        break;
      }
      last_active = Clock::now();
      if (!handle_frame(c, f, hello_done)) break;
      f.payload.clear();
      f.payload.shrink_to_fit();
    }
  } catch (const std::exception& e) {
    send_error(*c, false, 0, "internal", std::string("the server failed on this connection: ") + e.what());
  }
  cancel_conn_job(c, true);
  if (graceful && !c->dead.load())
    graceful_close(*c);
  else
    ::shutdown(c->fd, SHUT_RDWR);
  c->dead = true;
}

bool Server::handle_frame(const std::shared_ptr<Conn>& c, const Frame& f, bool& hello_done) {
  const std::string type = std::to_string(f.type);
  if (!hello_done) {
    if (f.type != HELLO) {
      send_error(*c, false, 0, "bad_frame", "the first frame must be HELLO (type 1), not type " + type);
      return false;
    }
    json::Value obj;
    std::string err;
    if (!parse_object(f.payload, obj, err)) {
      send_error(*c, false, 0, "bad_frame", "HELLO: " + err);
      return false;
    }
    for (const auto& kv : obj.as_object())
      if (kv.first != "protocol" && kv.first != "token") {
        send_error(*c, false, 0, "bad_frame",
                   "HELLO: unknown key " + quoted(kv.first) + " (the keys are protocol, token)");
        return false;
      }
    const json::Value* p = obj.find("protocol");
    if (!p || !p->is_int()) {
      send_error(*c, false, 0, "bad_frame",
                 "HELLO: protocol " + (p ? shown(*p) : std::string("missing")) + " is not an integer version");
      return false;
    }
    if (p->as_int() != kProtocolVersion) {
      send_error(*c, false, 0, "bad_frame",
                 "protocol version " + shown(*p) + " is not supported: this server speaks version " +
                     std::to_string(kProtocolVersion));
      return false;
    }
    const json::Value* t = obj.find("token");
    if (!cfg_.token.empty()) {
      if (!t || !t->is_string() || !same_secret(t->as_string(), cfg_.token)) {
        send_error(*c, false, 0, "unauthorized", t ? "wrong token" : "this server needs a token in HELLO");
        return false;
      }
    } else if (t && !t->is_string()) {
      send_error(*c, false, 0, "bad_frame", "HELLO: token " + shown(*t) + " is not a string");
      return false;
    }
    hello_done = true;
    return send(*c, WELCOME, welcome_);
  }
  switch (f.type) {
    case HELLO:
      send_error(*c, false, 0, "bad_frame", "HELLO again: a connection says HELLO once");
      return false;
    case GENERATE:
    case CANCEL: {
      json::Value obj;
      std::string err;
      if (!parse_object(f.payload, obj, err)) {
        send_error(*c, false, 0, "bad_frame", (f.type == GENERATE ? "GENERATE: " : "CANCEL: ") + err);
        return false;
      }
      if (f.type == GENERATE) {
        handle_generate(c, obj);
        return true;
      }
      uint32_t id = 0;
      try {
        id = parse_cancel(obj);
      } catch (const RequestError& e) {
        uint32_t rid = 0;
        const bool has = request_id(obj, rid);
        send_error(*c, has, rid, e.kind(), e.what());
        return true;
      }
      std::shared_ptr<Job> job;
      {
        std::lock_guard<std::mutex> lk(c->mu);
        job = c->job;
      }
      if (job && job->req.id == id) cancel_conn_job(c, false);
      return true;  // CANCEL for no such request: ignored
    }
    case HEALTH:
    case STATS:
      if (!f.payload.empty()) {
        send_error(*c, false, 0, "bad_frame",
                   std::string(f.type == HEALTH ? "HEALTH" : "STATS") + " carries no payload, this one has " +
                       std::to_string(f.payload.size()) + " bytes");
        return false;
      }
      return f.type == HEALTH ? send(*c, HEALTH_OK, health_payload()) : send(*c, STATS_OK, stats_payload());
    default:
      send_error(*c, false, 0, "bad_frame", "unknown frame type " + type + " (a client sends types 1..5)");
      return false;
  }
}

void Server::handle_generate(const std::shared_ptr<Conn>& c, const json::Value& obj) {
  uint32_t id = 0;
  const bool has_id = request_id(obj, id);
  std::string conn_id = "conn=" + std::to_string(c->num) + " id=" + (has_id ? std::to_string(id) : "-");
  bool busy_conn = false;
  uint32_t current = 0;
  {
    std::lock_guard<std::mutex> lk(c->mu);
    if (c->job) {
      busy_conn = true;
      current = c->job->req.id;
    }
  }
  if (busy_conn) {
    send_error(*c, has_id, id, "bad_request",
               "request " + std::to_string(current) +
                   " is still queued or running on this connection: send one request at a time");
    log("request " + conn_id + " refused=bad_request");
    return;
  }
  auto job = std::make_shared<Job>();
  try {
    job->req = parse_generate(obj, facts_, tok_.get());
  } catch (const RequestError& e) {
    send_error(*c, has_id, id, e.kind(), e.what());
    log("request " + conn_id + " refused=" + e.kind());
    return;
  }
  job->conn = c;
  job->enqueued = Clock::now();
  bool full = false;
  {
    std::lock_guard<std::mutex> lk(c->mu);
    std::lock_guard<std::mutex> qk(q_mu_);
    if (stopping_.load()) return;
    full = static_cast<int64_t>(queue_.size()) >= cfg_.max_queue;
    if (!full) {
      c->job = job;
      queue_.push_back(job);
    }
  }
  if (full) {
    send_error(*c, true, job->req.id, "busy",
               "the queue holds its maximum of " + std::to_string(cfg_.max_queue) + " requests");
    log("request " + conn_id + " refused=busy");
    return;
  }
  {
    std::lock_guard<std::mutex> lk(s_mu_);
    ++stats_.requests;
  }
  q_cv_.notify_one();
}

// CANCEL, or the connection ended (`disconnected`): a queued request is removed (and, for CANCEL,
// answered DONE "cancelled"), a running one stops before its next device step.
void Server::cancel_conn_job(const std::shared_ptr<Conn>& c, bool disconnected) {
  std::shared_ptr<Job> job;
  bool removed = false;
  {
    std::lock_guard<std::mutex> lk(c->mu);
    job = c->job;
    if (!job) return;
    if (disconnected) job->gone = true;
    job->cancel = true;
    std::lock_guard<std::mutex> qk(q_mu_);
    for (auto it = queue_.begin(); it != queue_.end(); ++it)
      if (*it == job) {
        queue_.erase(it);
        removed = true;
        break;
      }
    if (removed) c->job.reset();
  }
  if (!removed) return;  // running: the worker ends it
  const double queue_ms = ms_between(job->enqueued, Clock::now());
  {
    std::lock_guard<std::mutex> lk(s_mu_);
    ++stats_.cancelled;
    stats_.prompt_tokens += job->req.prompt.size();
  }
  if (!disconnected) send_done(*job, "cancelled", 0, "", job->req.has_seed, job->req.seed, false, 0, 0, queue_ms);
  log("request conn=" + std::to_string(c->num) + " id=" + std::to_string(job->req.id) +
      " prompt_tokens=" + std::to_string(job->req.prompt.size()) + " new_tokens=0 stop=cancelled sim_ms=- host_ms=0.0" +
      " queue_ms=" + fmt(queue_ms, 1));
}

// ---------------------------------------------------------------- the worker: the device's one user

void Server::worker_loop() {
  if (model_ && model_->slots() > 1) return batch_loop();  // an artifact with batched decode
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lk(q_mu_);
      q_cv_.wait(lk, [&] { return stopping_.load() || !queue_.empty(); });
      if (stopping_.load()) return;
      job = queue_.front();
      queue_.pop_front();
      running_ = true;
    }
    try {
      run_job(*job);
    } catch (const std::exception& e) {  // run_job answers every failure itself; this is a last guard
      log(std::string("worker: ") + e.what());
    }
    {
      std::lock_guard<std::mutex> lk(job->conn->mu);
      if (job->conn->job == job) job->conn->job.reset();
    }
    running_ = false;
  }
}

uint64_t draw_seed() {
  std::random_device rd;
  const uint64_t hi = rd(), lo = rd();
  const uint64_t t = static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  return ((hi << 32) ^ lo ^ (t * 0x9E3779B97F4A7C15ull)) & kMaxSeed;
}

void Server::run_job(Job& job) {
  const Clock::time_point t0 = Clock::now();
  const double queue_ms = ms_between(job.enqueued, t0);
  const Request& r = job.req;
  const uint64_t seed = r.has_seed ? r.seed : draw_seed();
  const std::string who = "request conn=" + std::to_string(job.conn->num) + " id=" + std::to_string(r.id) +
                          " prompt_tokens=" + std::to_string(r.prompt.size());
  auto release = [&] {  // before the reply's last frame: the connection may then send its next request at
    std::lock_guard<std::mutex> lk(job.conn->mu);  // once, and HEALTH says the device is free
    if (job.conn->job.get() == &job) job.conn->job.reset();
    running_ = false;
  };

  std::string reason, tail, error_kind, error_msg;
  int64_t new_tokens = 0;
  bool has_sim = false;
  double sim_ms = 0, device_ms = 0;
  if (job.cancel.load() || stopping_.load()) {
    reason = "cancelled";
  } else {
    // A connection found lost before the request's first token (the device server may have closed an
    // idle connection, or restarted) is reopened once and the request run again: nothing was sent yet.
    bool retried = false;
    for (;;) {
      int64_t ns0 = 0;
      bool opened_here = false;
      try {
        if (!model_) {
          opened_here = true;
          try {
            connect_device();
          } catch (const DeviceError& e) {
            throw DeviceError(e.kind(), "cannot be reached: " + std::string(e.what()));
          }
          {
            std::lock_guard<std::mutex> lk(s_mu_);
            ++stats_.device_reconnects;
          }
          log("device " + cfg_.device + " reconnected (target checked, weights uploaded again)");
        }
        ns0 = timing_->device_ns();
        uint64_t c0 = 0;
        const bool cycles = clock_mhz_ > 0;
        if (cycles) c0 = timing_->cycles();
        std::unique_ptr<TokenizerDecodeStream> ds;
        if (tok_) ds = std::make_unique<TokenizerDecodeStream>(*tok_);
        StopFilter stops(r.stop);
        GenerateOptions opts;
        opts.max_new_tokens = r.max_new_tokens;
        opts.sampling = r.sampling;
        opts.seed = seed;
        opts.eos_ids = r.eos_ids;
        bool stop_hit = false;
        std::string head(kTokenHeadBytes, '\0');
        for (int i = 0; i < 4; ++i) head[i] = static_cast<char>((r.id >> (8 * i)) & 0xFF);
        auto on_token = [&](int32_t t) {
          ++new_tokens;
          std::string text;
          if (ds && t >= 0 && static_cast<size_t>(t) < tok_->vocab_size()) text = ds->step(t);
          text = stops.push(text);
          const uint32_t u = static_cast<uint32_t>(t);
          for (int i = 0; i < 4; ++i) head[4 + i] = static_cast<char>((u >> (8 * i)) & 0xFF);
          send(*job.conn, TOKEN, head + text);
          if (stops.stopped()) {
            stop_hit = true;
            return false;
          }
          return !job.cancel.load() && !job.conn->dead.load() && !stopping_.load();
        };
        const GenerateResult res = generate(*model_, r.prompt, opts, on_token);
        if (!stop_hit) {
          tail = stops.push(ds ? ds->flush() : std::string());
          if (stops.stopped())
            stop_hit = true;
          else
            tail += stops.held();
        }
        if (stop_hit)
          reason = "stop";
        else if (res.reason == StopReason::kCallback)
          reason = "cancelled";
        else
          reason = stop_reason_name(res.reason);
        if (cycles) {
          const uint64_t c1 = timing_->cycles();
          has_sim = true;
          sim_ms = static_cast<double>(c1 - c0) / (clock_mhz_ * 1000.0);
        }
        device_ms = static_cast<double>(timing_->device_ns() - ns0) / 1e6;
      } catch (const DeviceError& e) {
        const bool lost = e.kind() == "ConnectionError" || e.kind() == "ProtocolError";
        if (lost && model_ && !opened_here && !retried && new_tokens == 0 && !job.cancel.load()) {
          mark_down(std::string("connection lost: ") + e.what());
          retried = true;
          continue;
        }
        error_kind = "device";
        if (!model_) {
          error_msg = "device " + cfg_.device + " " + e.what();
          if (!device_down_.load()) mark_down(e.what());
        } else if (lost) {
          if (timing_) device_ms = static_cast<double>(timing_->device_ns() - ns0) / 1e6;
          error_msg = "device " + cfg_.device + " connection lost: " + e.what();
          mark_down(std::string("connection lost: ") + e.what());
        } else {
          error_msg = "device " + cfg_.device + " refused an operation: " + e.kind() + ": " + e.what();
        }
      } catch (const GenerateArgumentError& e) {
        error_kind = "bad_request";
        error_msg = e.what();
      } catch (const std::exception& e) {
        error_kind = "internal";
        error_msg = std::string("the request failed in the server: ") + e.what();
      }
      break;
    }
  }
  const double host_ms = ms_between(t0, Clock::now());
  {
    std::lock_guard<std::mutex> lk(s_mu_);
    stats_.prompt_tokens += r.prompt.size();
    stats_.new_tokens += static_cast<uint64_t>(new_tokens);
    stats_.host_ms += host_ms;
    stats_.host_overhead_ms += std::max(0.0, host_ms - device_ms);
    if (has_sim) stats_.sim_ms += sim_ms;
    if (error_kind.empty()) ++(reason == "cancelled" ? stats_.cancelled : stats_.completed);
  }
  release();
  if (!error_kind.empty()) {
    send_error(*job.conn, true, r.id, error_kind, error_msg);
    log(who + " new_tokens=" + std::to_string(new_tokens) + " stop=error:" + error_kind + " host_ms=" +
        fmt(host_ms, 1) + " queue_ms=" + fmt(queue_ms, 1) + " (" + utf8_or_replaced(error_msg) + ")");
    return;
  }
  if (!job.gone.load()) send_done(job, reason, new_tokens, tail, true, seed, has_sim, sim_ms, host_ms, queue_ms);
  log(who + " new_tokens=" + std::to_string(new_tokens) + " stop=" + reason +
      " sim_ms=" + (has_sim ? fmt(sim_ms, 3) : std::string("-")) + " host_ms=" + fmt(host_ms, 1) +
      " queue_ms=" + fmt(queue_ms, 1));
}

// ---------------------------------------------------------------- the batched loop (doc/serve.md)

// A request admitted into a slot of the batched loop: its reply's state (what run_job keeps in locals).
struct Server::Running {
  std::shared_ptr<Job> job;
  Clock::time_point t0;
  double queue_ms = 0;
  uint64_t seed = 0;
  std::unique_ptr<TokenizerDecodeStream> ds;
  std::unique_ptr<StopFilter> stops;
  std::string head;
  bool stop_hit = false, done = false, has_sim = false;
  int64_t new_tokens = 0;
  double sim_ms = 0, device_ms = 0;
  std::string reason, tail, error_kind, error_msg;
};

// With batched decode the worker runs every admitted request together (continuous batching): before each
// step, queued requests take the free slots (each prefilled alone, which gives its first token); a step
// then runs one token of every running request (BatchDecoder). A request's sim_ms is the simulated time
// of its prefill and of every step it took part in (shared with the others in the step).
void Server::batch_loop() {
  std::unique_ptr<BatchDecoder> bd;
  std::vector<std::shared_ptr<Running>> run;
  auto fail_all = [&](const std::string& kind, const std::string& msg) {
    for (auto& a : run) {
      a->error_kind = kind;
      a->error_msg = msg;
      finish_batched(*a);
    }
    run.clear();
    if (bd) bd->clear();
  };
  for (;;) {
    std::vector<std::shared_ptr<Job>> admit;
    {
      std::unique_lock<std::mutex> lk(q_mu_);
      if (run.empty()) {
        running_ = false;
        q_cv_.wait(lk, [&] { return stopping_.load() || !queue_.empty(); });
      }
      if (stopping_.load()) {
        lk.unlock();
        for (auto& a : run) a->job->cancel = true;
        fail_all("", "");
        return;
      }
      const int64_t slots = bd ? bd->slots() : (model_ ? model_->slots() : 1);
      int64_t free = slots - static_cast<int64_t>(run.size());
      while (free > 0 && !queue_.empty()) {
        admit.push_back(queue_.front());
        queue_.pop_front();
        --free;
      }
      running_ = !run.empty() || !admit.empty();
    }
    for (auto& job : admit) {
      if (!model_) {
        bd.reset();
        try {
          connect_device();
          {
            std::lock_guard<std::mutex> lk(s_mu_);
            ++stats_.device_reconnects;
          }
          log("device " + cfg_.device + " reconnected (target checked, weights uploaded again)");
        } catch (const DeviceError& e) {
          if (!device_down_.load()) mark_down(e.what());
          auto a = std::make_shared<Running>();
          a->job = job;
          a->t0 = Clock::now();
          a->queue_ms = ms_between(job->enqueued, a->t0);
          a->seed = job->req.has_seed ? job->req.seed : draw_seed();
          a->error_kind = "device";
          a->error_msg = "device " + cfg_.device + " cannot be reached: " + e.what();
          finish_batched(*a);
          continue;
        }
      }
      if (!bd) bd = std::make_unique<BatchDecoder>(*model_);
      start_batched(job, *bd, run);
    }
    if (!bd || bd->running() == 0) {
      run.clear();
      continue;
    }
    const uint64_t c0 = clock_mhz_ > 0 ? timing_->cycles() : 0;
    const int64_t ns0 = timing_->device_ns();
    std::vector<std::shared_ptr<Running>> in_step = run;
    try {
      bd->step();
    } catch (const DeviceError& e) {
      const bool lost = e.kind() == "ConnectionError" || e.kind() == "ProtocolError";
      const std::string msg = lost ? "device " + cfg_.device + " connection lost: " + e.what()
                                   : "device " + cfg_.device + " refused an operation: " + e.kind() + ": " + e.what();
      if (lost) mark_down(std::string("connection lost: ") + e.what());
      fail_all("device", msg);
      bd.reset();
      continue;
    } catch (const std::exception& e) {
      fail_all("internal", std::string("the request failed in the server: ") + e.what());
      continue;
    }
    const double step_ms = clock_mhz_ > 0 ? static_cast<double>(timing_->cycles() - c0) / (clock_mhz_ * 1000.0) : 0;
    const double dev_ms = static_cast<double>(timing_->device_ns() - ns0) / 1e6;
    for (auto& a : in_step) {
      a->sim_ms += step_ms;
      a->device_ms += dev_ms;
    }
    std::vector<std::shared_ptr<Running>> still;
    for (auto& a : run) {
      if (a->done)
        finish_batched(*a);
      else
        still.push_back(a);
    }
    run.swap(still);
  }
}

void Server::start_batched(const std::shared_ptr<Job>& job, BatchDecoder& bd,
                           std::vector<std::shared_ptr<Running>>& run) {
  auto a = std::make_shared<Running>();
  a->job = job;
  a->t0 = Clock::now();
  a->queue_ms = ms_between(job->enqueued, a->t0);
  const Request& r = job->req;
  a->seed = r.has_seed ? r.seed : draw_seed();
  a->has_sim = clock_mhz_ > 0;
  if (job->cancel.load() || stopping_.load()) {
    a->reason = "cancelled";
    finish_batched(*a);
    return;
  }
  if (tok_) a->ds = std::make_unique<TokenizerDecodeStream>(*tok_);
  a->stops = std::make_unique<StopFilter>(r.stop);
  a->head.assign(kTokenHeadBytes, '\0');
  for (int i = 0; i < 4; ++i) a->head[i] = static_cast<char>((r.id >> (8 * i)) & 0xFF);
  GenerateOptions opts;
  opts.max_new_tokens = r.max_new_tokens;
  opts.sampling = r.sampling;
  opts.seed = a->seed;
  opts.eos_ids = r.eos_ids;
  Running* ap = a.get();
  auto on_token = [this, ap](int32_t t) {
    Running& x = *ap;
    ++x.new_tokens;
    std::string text;
    if (x.ds && t >= 0 && static_cast<size_t>(t) < tok_->vocab_size()) text = x.ds->step(t);
    text = x.stops->push(text);
    const uint32_t u = static_cast<uint32_t>(t);
    for (int i = 0; i < 4; ++i) x.head[4 + i] = static_cast<char>((u >> (8 * i)) & 0xFF);
    send(*x.job->conn, TOKEN, x.head + text);
    if (x.stops->stopped()) {
      x.stop_hit = true;
      return false;
    }
    return !x.job->cancel.load() && !x.job->conn->dead.load() && !stopping_.load();
  };
  auto on_done = [this, ap](const GenerateResult& res) {
    Running& x = *ap;
    if (!x.stop_hit) {
      x.tail = x.stops->push(x.ds ? x.ds->flush() : std::string());
      if (x.stops->stopped())
        x.stop_hit = true;
      else
        x.tail += x.stops->held();
    }
    x.reason = x.stop_hit ? "stop" : res.reason == StopReason::kCallback ? "cancelled" : stop_reason_name(res.reason);
    x.done = true;
  };
  const uint64_t c0 = a->has_sim ? timing_->cycles() : 0;
  const int64_t ns0 = timing_->device_ns();
  try {
    bd.start(r.prompt, opts, on_token, on_done);
  } catch (const GenerateArgumentError& e) {
    a->error_kind = "bad_request";
    a->error_msg = e.what();
  } catch (const DeviceError& e) {
    const bool lost = e.kind() == "ConnectionError" || e.kind() == "ProtocolError";
    a->error_kind = "device";
    a->error_msg = lost ? "device " + cfg_.device + " connection lost: " + e.what()
                        : "device " + cfg_.device + " refused an operation: " + e.kind() + ": " + e.what();
    if (lost) {  // the others' caches went with the device: they fail too
      mark_down(std::string("connection lost: ") + e.what());
      for (auto& o : run) {
        o->error_kind = a->error_kind;
        o->error_msg = a->error_msg;
        finish_batched(*o);
      }
      run.clear();
      bd.clear();
    }
  } catch (const std::exception& e) {
    a->error_kind = "internal";
    a->error_msg = std::string("the request failed in the server: ") + e.what();
  }
  if (a->has_sim && model_) a->sim_ms += static_cast<double>(timing_->cycles() - c0) / (clock_mhz_ * 1000.0);
  if (model_) a->device_ms += static_cast<double>(timing_->device_ns() - ns0) / 1e6;
  if (!a->error_kind.empty() || a->done)
    finish_batched(*a);
  else
    run.push_back(a);
}

// The end of a request of the batched loop: run_job's accounting, release, DONE or ERROR and log line.
void Server::finish_batched(Running& a) {
  Job& job = *a.job;
  const Request& r = job.req;
  if (a.error_kind.empty() && a.reason.empty()) a.reason = "cancelled";  // stopped by the server
  const double host_ms = ms_between(a.t0, Clock::now());
  {
    std::lock_guard<std::mutex> lk(s_mu_);
    stats_.prompt_tokens += r.prompt.size();
    stats_.new_tokens += static_cast<uint64_t>(a.new_tokens);
    stats_.host_ms += host_ms;
    stats_.host_overhead_ms += std::max(0.0, host_ms - a.device_ms);
    if (a.has_sim) stats_.sim_ms += a.sim_ms;
    if (a.error_kind.empty()) ++(a.reason == "cancelled" ? stats_.cancelled : stats_.completed);
  }
  {
    std::lock_guard<std::mutex> lk(job.conn->mu);
    if (job.conn->job.get() == &job) job.conn->job.reset();
  }
  const std::string who = "request conn=" + std::to_string(job.conn->num) + " id=" + std::to_string(r.id) +
                          " prompt_tokens=" + std::to_string(r.prompt.size());
  if (!a.error_kind.empty()) {
    send_error(*job.conn, true, r.id, a.error_kind, a.error_msg);
    log(who + " new_tokens=" + std::to_string(a.new_tokens) + " stop=error:" + a.error_kind + " host_ms=" +
        fmt(host_ms, 1) + " queue_ms=" + fmt(a.queue_ms, 1) + " (" + utf8_or_replaced(a.error_msg) + ")");
    return;
  }
  if (!job.gone.load())
    send_done(job, a.reason, a.new_tokens, a.tail, true, a.seed, a.has_sim, a.sim_ms, host_ms, a.queue_ms);
  log(who + " new_tokens=" + std::to_string(a.new_tokens) + " stop=" + a.reason +
      " sim_ms=" + (a.has_sim ? fmt(a.sim_ms, 3) : std::string("-")) + " host_ms=" + fmt(host_ms, 1) +
      " queue_ms=" + fmt(a.queue_ms, 1) + " batched");
}

// ---------------------------------------------------------------- start and stop

int Server::run() {
  const json::Value& m = art_.manifest();
  if (!m.find("llm") || m.at("llm").is_null())
    throw StartupError("artifact " + art_.dir() + " is not an LLM artifact (compile it with --llm)");
  const json::Value* desc = m.at("target").find("description");
  if (desc && desc->is_object()) {
    const json::Value* mhz = desc->find("clock_mhz");
    if (mhz && mhz->is_number() && mhz->as_double() > 0) clock_mhz_ = mhz->as_double();
  }
  load_tokenizer();
  try {
    connect_device();
  } catch (const DeviceError& e) {
    if (e.kind() == "TargetMismatch") throw StartupError("device " + cfg_.device + ": " + e.what());
    throw StartupError("device " + cfg_.device + ": " + e.kind() + ": " + e.what());
  }
  facts_.max_ctx = model_->max_ctx();
  facts_.vocab = model_->vocab();
  for (int32_t e : facts_.eos_ids)
    if (e >= facts_.vocab)
      throw StartupError("artifact " + art_.dir() + ": tokenizer eos id " + std::to_string(e) +
                         " is outside the model's vocabulary of " + std::to_string(facts_.vocab));
  if (facts_.has_bos && facts_.bos_id >= facts_.vocab)
    throw StartupError("artifact " + art_.dir() + ": tokenizer bos id " + std::to_string(facts_.bos_id) +
                       " is outside the model's vocabulary of " + std::to_string(facts_.vocab));
  welcome_ = welcome_payload();
  if (welcome_.size() + 1 > cfg_.max_frame)
    throw StartupError("the WELCOME frame (" + std::to_string(welcome_.size() + 1) +
                       " bytes, with the chat template) does not fit --max-frame " + std::to_string(cfg_.max_frame));

  std::string addr;
  const int lfd = listen_socket(addr);
  const size_t colon = addr.rfind(':');
  if (!cfg_.port_file.empty()) {
    const std::string tmp = cfg_.port_file + ".tmp";
    {
      std::ofstream pf(tmp, std::ios::trunc);
      pf << addr.substr(colon + 1) << "\n";
      if (!pf) {
        ::close(lfd);
        throw StartupError("cannot write --port-file " + cfg_.port_file);
      }
    }
    if (std::rename(tmp.c_str(), cfg_.port_file.c_str()) != 0) {
      ::close(lfd);
      throw StartupError("cannot write --port-file " + cfg_.port_file + ": " + std::strerror(errno));
    }
  }
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC) != 0) {
    ::close(lfd);
    throw StartupError(std::string("pipe: ") + std::strerror(errno));
  }
  log("listening on " + addr + " (model " + m.at("model").as_string() + ", device " + cfg_.device + ", max_ctx " +
      std::to_string(facts_.max_ctx) + (tok_ ? ", tokenizer" : ", token ids only") + ")");

  std::thread worker([this] { worker_loop(); });
  std::thread acceptor([this, lfd, &wake] { accept_loop(lfd, wake[0]); });

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig = 0;
  while (::sigwait(&set, &sig) != 0) {
  }
  log(std::string("stopping (") + (sig == SIGINT ? "SIGINT" : "SIGTERM") + ")");
  stopping_ = true;
  const char byte = 1;
  if (::write(wake[1], &byte, 1) < 0) {
  }
  acceptor.join();
  ::close(lfd);
  {
    std::lock_guard<std::mutex> lk(q_mu_);
    for (auto& j : queue_) j->cancel = true;
  }
  q_cv_.notify_all();
  {
    std::lock_guard<std::mutex> lk(c_mu_);
    for (ConnThread& t : conns_) ::shutdown(t.conn->fd, SHUT_RDWR);
  }
  worker.join();
  std::list<ConnThread> threads;
  {
    std::lock_guard<std::mutex> lk(c_mu_);
    threads.swap(conns_);
  }
  for (ConnThread& t : threads) t.thread.join();
  {
    std::lock_guard<std::mutex> lk(q_mu_);
    queue_.clear();
  }
  ::close(wake[0]);
  ::close(wake[1]);
  log("stopped");
  return 0;
}

}  // namespace

int run_server(const ServerConfig& cfg) {
  // SIGINT / SIGTERM are taken by sigwait in run(): blocked here, before any thread starts, so every
  // thread inherits the mask. SIGPIPE: a peer gone is an error return, never a signal.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  Server server(cfg);
  return server.run();
}

}  // namespace serve
}  // namespace dlavm
