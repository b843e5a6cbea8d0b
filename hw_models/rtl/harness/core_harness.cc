// core_harness.cc: the Verilated dlavm_core with its testbench memory and a C API for ctypes
// (hw_models/rtl/device.py, the rtl:// device; doc/rtl.md).
//
// What it models around the RTL (the core itself is hw_models/rtl/core/dlavm_core.sv):
//  * Device memory: the three regions of the target (doc/isa.md section 2), sparse 64 KiB pages,
//    never-written bytes read as 0. A port access outside every region or across a region end stops
//    the run with an error naming the port, the direction and the address.
//  * The HBM timing model of doc/simulator.md ("Memory phase"), per channel: byte a of HBM belongs to
//    channel ((a - hbm_base) / hbm_interleave_bytes) % hbm_channels; a channel moves width_c bytes per
//    cycle (hbm_bits_per_cycle / 8; the DDR port is one channel of ddr_bits_per_cycle / 8). As the
//    target defines them, dma_setup_cycles is paid once per instruction and channel (the first bytes an
//    instruction moves on a channel), and burst_overhead_cycles once per dma_burst_bytes of an
//    instruction's bytes on a channel. A channel is a FIFO server: requests of every port are charged
//    in the order they are accepted, each adding its work (its instruction's set-up if it is the first
//    on that channel, the cycles its bytes add to the instruction's ceil(b / width_c) and burst count)
//    after the work already queued, so concurrent streams contend. SRAM costs nothing (one beat per
//    cycle per port). The front end's AUX fetch (port fe) is not charged to a channel, as in the
//    simulator ("Fetch traffic is not charged"). A unit's instruction is the one it started last
//    (dbg_start): its requests and writes until the next start are that instruction's.
//      - a read request is reserved on its channels when accepted; beat i is delivered (rd_rsp_valid)
//        once the bytes of beats 0..i have crossed their channels, in request order per port;
//      - a write beat is committed when accepted (wr_valid & wr_ready) and charged likewise;
//        wr_ready is low while one of the beat's channels has more than WR_WINDOW cycles of work
//        queued (the write buffer is full).
//  * The host of doc/simulator.md ("Host"): each register access costs HOST_RTT_CYCLES
//    (ceil(host_rtt_us * clock_mhz)) device cycles, the access itself happening in the last of them;
//    a backdoor write_mem/read_mem of n bytes costs HOST_RTT_CYCLES + ceil(n / host_bytes_per_cycle)
//    cycles (the copy happens at its first cycle); wait() polls STATUS, one round trip per poll.
//  * Per-instruction records from the core's dbg_* outputs: dbg_issue/dbg_issue_op open a record (global
//    issue order, as the simulator's index), dbg_start[u] / dbg_done[u] / dbg_complete[u] fill in the
//    start, busy_end and done cycles of unit u's oldest instruction still waiting for that event (a unit
//    starts, finishes and completes in its issue order). nop/fence: start = busy_end = done = issue.
//
// Target constants come from harness_cfg.h, written by device.py from dlavm.target next to the build.
// Cycle n: inputs are driven at the falling edge (clk = 0) from the state after edge n-1, sampled
// handshakes take effect at the rising edge ending cycle n.
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "verilated.h"
#include "Vdlavm_core.h"
#if VM_TRACE
#include "verilated_fst_c.h"
#endif
#include "harness_cfg.h"

namespace {

constexpr int PB = DH_PORT_BYTES;
constexpr uint64_t PAGE = 1ull << 16;
constexpr uint64_t WR_WINDOW = 64;             // cycles of channel work a write buffer may hold
constexpr unsigned MAX_OUTSTANDING = 16;       // read requests a port may have in flight
constexpr uint64_t CSB_TIMEOUT = 1ull << 24;   // cycles a register access may wait for csb_ready

enum Status { OK = 0, E_DEVICE = 1, E_ADDRESS = 2, E_REGISTER = 3, E_TIMEOUT = 4, E_ARG = 5 };

// ------------------------------------------------------------------ memory
struct Memory {
  std::unordered_map<uint64_t, std::unique_ptr<uint8_t[]>> pages;
  uint8_t* page(uint64_t a, bool create) {
    auto it = pages.find(a / PAGE);
    if (it != pages.end()) return it->second.get();
    if (!create) return nullptr;
    auto p = std::unique_ptr<uint8_t[]>(new uint8_t[PAGE]());
    uint8_t* raw = p.get();
    pages.emplace(a / PAGE, std::move(p));
    return raw;
  }
  void write(uint64_t a, const uint8_t* src, uint64_t n) {
    while (n) {
      uint64_t off = a % PAGE, k = std::min<uint64_t>(n, PAGE - off);
      std::memcpy(page(a, true) + off, src, k);
      a += k; src += k; n -= k;
    }
  }
  void read(uint64_t a, uint8_t* dst, uint64_t n) {
    while (n) {
      uint64_t off = a % PAGE, k = std::min<uint64_t>(n, PAGE - off);
      const uint8_t* p = page(a, false);
      if (p) std::memcpy(dst, p + off, k); else std::memset(dst, 0, k);
      a += k; dst += k; n -= k;
    }
  }
};

// index of the region holding [a, a + n), -1 if none (or across an end)
int region_of(uint64_t a, uint64_t n) {
  for (int r = 0; r < 3; ++r)
    if (a >= DH_REGION_BASE[r] && a - DH_REGION_BASE[r] < DH_REGION_SIZE[r] &&
        n <= DH_REGION_SIZE[r] - (a - DH_REGION_BASE[r]))
      return r;
  return -1;
}

// ------------------------------------------------------------------ channels
struct Channel {
  uint64_t width, free = 0, bytes = 0, busy_cycles = 0;
  // per unit: the instruction (start count) whose bytes it last moved here, and how many
  uint64_t gen[4] = {~0ull, ~0ull, ~0ull, ~0ull}, cum[4] = {0, 0, 0, 0};
  static uint64_t cdiv(uint64_t a, uint64_t b) { return (a + b - 1) / b; }
  // charge n bytes of unit u's instruction g arriving at cycle now; returns the cycle their last byte is done
  uint64_t charge(uint64_t now, int u, uint64_t g, uint64_t n) {
    uint64_t work = 0;
    if (gen[u] != g) { gen[u] = g; cum[u] = 0; work = DH_DMA_SETUP_CYCLES; }
    uint64_t c0 = cum[u], c1 = c0 + n;
    work += cdiv(c1, width) - cdiv(c0, width) +
            (cdiv(c1, DH_DMA_BURST_BYTES) - cdiv(c0, DH_DMA_BURST_BYTES)) * DH_BURST_OVERHEAD_CYCLES;
    cum[u] = c1; bytes += n; busy_cycles += work;
    free = std::max(now, free) + work;
    return free;
  }
  uint64_t busy() const { return busy_cycles; }
};

// ------------------------------------------------------------------ ports
struct ReadReq {
  uint64_t addr, bytes, beats, next = 0;
  std::vector<uint64_t> ready;   // cycle from which beat i may be delivered
};

struct ReadPort {
  const char* name;
  int unit;   // the unit whose instructions it serves (-1: not charged, the front end)
  std::deque<ReadReq> q;
  bool presenting = false;
  uint8_t beat[PB];
};

constexpr uint64_t NONE = ~0ull;
struct Record { uint32_t opcode; int32_t unit; uint64_t issue, start, busy_end, done; };

template <typename T> inline bool strb_bit(const T& s, int j) { return (s >> j) & 1; }
template <std::size_t N> inline bool strb_bit(const VlWide<N>& s, int j) { return (s[j / 32] >> (j % 32)) & 1; }

}  // namespace

struct Harness {
  std::unique_ptr<VerilatedContext> ctx;
  std::unique_ptr<Vdlavm_core> m;
#if VM_TRACE
  std::unique_ptr<VerilatedFstC> fst;
#endif
  Memory mem;
  std::vector<Channel> chans;   // hbm channels, then ddr
  ReadPort rp[5] = {{"fe", -1, {}, false, {}}, {"dma", 0, {}, false, {}}, {"mvm", 1, {}, false, {}},
                    {"mat", 2, {}, false, {}}, {"sfu", 3, {}, false, {}}};
  uint64_t unit_gen[4] = {0, 0, 0, 0};   // instructions each unit has started
  std::vector<Record> records;
  std::deque<size_t> wait_start[4], wait_done[4], wait_complete[4];   // record indices per unit and event
  uint64_t cycle = 0, host_reg_accesses = 0, last_push = ~0ull;
  uint64_t wr_bytes = 0, rd_bytes = 0;
  std::string err;
  int err_kind = OK;
  bool stopped = false;

  // ------------------------------------------------------------ helpers
  int fail(int kind, const std::string& msg) {
    if (err_kind == OK) { err_kind = kind; err = msg; }
    stopped = true;
    return kind;
  }
  // channel chunks of [a, a + n) within HBM or DDR: calls f(channel, bytes)
  template <typename F> void chunks(int region, uint64_t a, uint64_t n, F f) {
    if (region == DH_DDR) { f(DH_HBM_CHANNELS, n); return; }
    if (region != DH_HBM) return;
    uint64_t off = a - DH_REGION_BASE[DH_HBM];
    while (n) {
      uint64_t k = std::min<uint64_t>(n, DH_HBM_INTERLEAVE - off % DH_HBM_INTERLEAVE);
      f((off / DH_HBM_INTERLEAVE) % DH_HBM_CHANNELS, k);
      off += k; n -= k;
    }
  }

  // ------------------------------------------------------------ one clock cycle
  void drive_reads() {
#define DH_DRIVE(i, p)                                                                        \
  {                                                                                           \
    ReadPort& P = rp[i];                                                                      \
    m->p##_rd_req_ready = P.q.size() < MAX_OUTSTANDING;                                       \
    bool v = !P.q.empty() && P.q.front().ready[P.q.front().next] <= cycle;                    \
    if (v && !P.presenting) {                                                                 \
      ReadReq& R = P.q.front();                                                               \
      uint64_t a = R.addr + R.next * PB, left = R.addr + R.bytes - a;                         \
      std::memset(P.beat, 0, PB);                                                             \
      mem.read(a, P.beat, std::min<uint64_t>(left, PB));                                      \
      std::memcpy(&m->p##_rd_rsp_data[0], P.beat, PB);                                        \
      m->p##_rd_rsp_last = R.next + 1 == R.beats;                                             \
      P.presenting = true;                                                                    \
    }                                                                                         \
    m->p##_rd_rsp_valid = v;                                                                  \
  }
    DH_DRIVE(0, fe) DH_DRIVE(1, dma) DH_DRIVE(2, mvm) DH_DRIVE(3, mat) DH_DRIVE(4, sfu)
#undef DH_DRIVE
  }

  template <typename S> bool write_ready(bool valid, uint64_t addr, const S& strb) {
    if (!valid) return true;
    int lo = -1, hi = -1;
    for (int j = 0; j < PB; ++j)
      if (strb_bit(strb, j)) { if (lo < 0) lo = j; hi = j; }
    if (lo < 0) return true;
    int r = region_of(addr + lo, hi - lo + 1);
    if (r < 0) return true;   // refused when accepted
    bool ok = true;
    chunks(r, addr + lo, hi - lo + 1, [&](int c, uint64_t) { ok = ok && chans[c].free <= cycle + WR_WINDOW; });
    return ok;
  }

  void drive_writes() {
#define DH_WREADY(p) m->p##_wr_ready = write_ready(m->p##_wr_valid, m->p##_wr_addr, m->p##_wr_strb);
    DH_WREADY(dma) DH_WREADY(mvm) DH_WREADY(mat) DH_WREADY(sfu)
#undef DH_WREADY
  }

  void accept_read(ReadPort& P, uint64_t addr, uint64_t bytes) {
    int r = region_of(addr, bytes);
    if (bytes == 0 || addr % 32 || bytes % 32 || r < 0) {
      char b[200];
      std::snprintf(b, sizeof b, "port %s read request of %llu bytes at %#llx: %s", P.name,
                    (unsigned long long)bytes, (unsigned long long)addr,
                    r < 0 ? "outside every region or across a region end" : "not a positive multiple of 32");
      fail(E_ADDRESS, b);
      return;
    }
    ReadReq R{addr, bytes, (bytes + PB - 1) / PB, 0, {}};
    R.ready.resize(R.beats);
    uint64_t t = cycle + 1;
    for (uint64_t i = 0; i < R.beats; ++i) {
      uint64_t a = addr + i * PB, n = std::min<uint64_t>(PB, addr + bytes - a);
      if (P.unit >= 0)
        chunks(r, a, n, [&](int c, uint64_t k) { t = std::max(t, chans[c].charge(cycle, P.unit, unit_gen[P.unit], k)); });
      R.ready[i] = t;
    }
    rd_bytes += bytes;
    P.q.push_back(std::move(R));
  }

  template <typename S> void accept_write(const char* port, int unit, uint64_t addr, const EData* data, const S& strb) {
    const uint8_t* d = reinterpret_cast<const uint8_t*>(data);
    int lo = -1, hi = -1;
    for (int j = 0; j < PB; ++j)
      if (strb_bit(strb, j)) { if (lo < 0) lo = j; hi = j; }
    if (lo < 0) return;
    int r = region_of(addr + lo, hi - lo + 1);
    if (r < 0 || addr % 32) {
      char b[200];
      std::snprintf(b, sizeof b, "port %s write of bytes %#llx..%#llx: %s", port,
                    (unsigned long long)(addr + lo), (unsigned long long)(addr + hi),
                    r < 0 ? "outside every region or across a region end" : "address not 32-byte aligned");
      fail(E_ADDRESS, b);
      return;
    }
    for (int j = lo; j <= hi;) {   // runs of set strobes
      int k = j;
      while (k <= hi && strb_bit(strb, k)) ++k;
      if (k > j) mem.write(addr + j, d + j, k - j);
      j = k + 1;
    }
    chunks(r, addr + lo, hi - lo + 1, [&](int c, uint64_t k) { chans[c].charge(cycle, unit, unit_gen[unit], k); });
    wr_bytes += hi - lo + 1;
  }

  void dump(uint64_t t) {
#if VM_TRACE
    if (fst) fst->dump(t);
#else
    (void)t;
#endif
  }

  // one cycle; csb inputs must already be driven. Returns whether csb handshook.
  bool tick() {
    m->clk = 0;
    drive_reads();
    m->eval();
    drive_writes();
    m->eval();
    dump(2 * cycle);
    // sample handshakes (the rising edge ending this cycle)
    bool csb = m->csb_valid && m->csb_ready;
    struct Acc { int port; uint64_t addr, bytes; } acc[5];
    int nacc = 0;
    bool taken[5];
#define DH_SAMPLE(i, p)                                                                       \
    if (m->p##_rd_req_valid && m->p##_rd_req_ready)                                           \
      acc[nacc++] = {i, (uint64_t)m->p##_rd_req_addr, (uint64_t)m->p##_rd_req_bytes};         \
    taken[i] = m->p##_rd_rsp_valid && m->p##_rd_rsp_ready;
    DH_SAMPLE(0, fe) DH_SAMPLE(1, dma) DH_SAMPLE(2, mvm) DH_SAMPLE(3, mat) DH_SAMPLE(4, sfu)
#undef DH_SAMPLE
#define DH_WRITE(u, p)                                                                        \
    if (m->p##_wr_valid && m->p##_wr_ready) accept_write(#p, u, m->p##_wr_addr, &m->p##_wr_data[0], m->p##_wr_strb);
    DH_WRITE(0, dma) DH_WRITE(1, mvm) DH_WRITE(2, mat) DH_WRITE(3, sfu)
#undef DH_WRITE
    record_events();
    m->clk = 1;
    m->eval();
    dump(2 * cycle + 1);
    for (int i = 0; i < 5; ++i)
      if (taken[i]) {
        ReadPort& P = rp[i];
        P.presenting = false;
        if (++P.q.front().next == P.q.front().beats) P.q.pop_front();
      }
    for (int k = 0; k < nacc; ++k) accept_read(rp[acc[k].port], acc[k].addr, acc[k].bytes);
    ++cycle;
    if (m->error && err_kind == OK) {
      char b[120];
      std::snprintf(b, sizeof b, "the core raised error (error_info %#010x) at cycle %llu", (unsigned)m->error_info,
                    (unsigned long long)cycle);
      fail(E_DEVICE, b);
    }
    return csb;
  }

  void record_events() {
    if (m->dbg_issue) {
      uint32_t op = m->dbg_issue_op;
      int u = DH_UNIT_OF[op];
      Record r{op, u, cycle, NONE, NONE, NONE};
      if (u < 0) r.start = r.busy_end = r.done = cycle;
      else wait_start[u].push_back(records.size());
      records.push_back(r);
    }
    uint32_t st = m->dbg_start, dn = m->dbg_done, cp = m->dbg_complete;
    for (int u = 0; u < 4; ++u) {
      if ((cp >> u & 1) && !wait_complete[u].empty()) {
        records[wait_complete[u].front()].done = cycle;
        wait_complete[u].pop_front();
      }
      if ((dn >> u & 1) && !wait_done[u].empty()) {
        records[wait_done[u].front()].busy_end = cycle;
        wait_complete[u].push_back(wait_done[u].front());
        wait_done[u].pop_front();
      }
      if (st >> u & 1) ++unit_gen[u];   // later requests and writes of u are its new instruction's
      if ((st >> u & 1) && !wait_start[u].empty()) {
        records[wait_start[u].front()].start = cycle;
        wait_done[u].push_back(wait_start[u].front());
        wait_start[u].pop_front();
      }
    }
  }

  int idle(uint64_t n) {
    for (uint64_t i = 0; i < n && !stopped; ++i) tick();
    return stopped ? err_kind : OK;
  }

  // a host register access: rtt - 1 idle cycles, then the handshake
  int csb(bool write, uint32_t addr, uint32_t wdata, uint32_t* rdata) {
    if (stopped) return err_kind;
    ++host_reg_accesses;
    if (idle(DH_HOST_RTT_CYCLES - 1)) return err_kind;
    m->csb_valid = 1; m->csb_write = write; m->csb_addr = addr; m->csb_wdata = wdata;
    uint64_t t0 = cycle;
    bool done = false;
    uint32_t rd = 0;
    bool cerr = false;
    while (!done && !stopped) {
      if (cycle - t0 > CSB_TIMEOUT) break;
      m->clk = 0;
      drive_reads();
      m->eval();
      rd = m->csb_rdata; cerr = m->csb_err;
      uint64_t here = cycle;
      done = tick();
      if (done && write && addr == DH_REG_INSN_PUSH) last_push = here;
    }
    m->csb_valid = 0; m->csb_write = 0;
    if (stopped) return err_kind;
    if (!done) {
      char b[120];
      std::snprintf(b, sizeof b, "register %#x: no csb_ready within %llu cycles", addr, (unsigned long long)CSB_TIMEOUT);
      return fail(E_TIMEOUT, b);
    }
    if (cerr) {
      char b[120];
      std::snprintf(b, sizeof b, "register %#x: the core refused the %s (csb_err)", addr, write ? "write" : "read");
      err_kind = E_REGISTER; err = b;   // not sticky: the device goes on
      int k = E_REGISTER;
      err_kind = OK;
      last_csb_err = b;
      return k;
    }
    if (rdata) *rdata = rd;
    return OK;
  }
  std::string last_csb_err;

  Harness(const char* fst_path) : ctx(new VerilatedContext), m(nullptr) {
    ctx->commandArgs(0, (const char**)nullptr);
#if VM_TRACE
    if (fst_path && *fst_path) ctx->traceEverOn(true);
#endif
    m.reset(new Vdlavm_core(ctx.get(), "dlavm_core"));
    for (int c = 0; c < DH_HBM_CHANNELS; ++c) chans.push_back(Channel{DH_HBM_BYTES_PER_CYCLE});
    chans.push_back(Channel{DH_DDR_BYTES_PER_CYCLE});
#if VM_TRACE
    if (fst_path && *fst_path) {
      fst.reset(new VerilatedFstC);
      m->trace(fst.get(), 99);
      fst->open(fst_path);
    }
#else
    (void)fst_path;
#endif
    // reset: 4 cycles with rst_n low, not counted
    m->csb_valid = 0; m->csb_write = 0; m->csb_addr = 0; m->csb_wdata = 0;
    m->rst_n = 0;
    for (int i = 0; i < 4; ++i) {
      m->clk = 0; m->eval(); m->clk = 1; m->eval();
    }
    m->clk = 0; m->eval();
    m->rst_n = 1;
    m->eval();
    for (auto& r : rp) r.q.clear();
    records.clear();
    for (int u = 0; u < 4; ++u) { wait_start[u].clear(); wait_done[u].clear(); wait_complete[u].clear(); }
  }
  ~Harness() {
#if VM_TRACE
    if (fst) fst->close();
#endif
    m->final();
  }
};

// ------------------------------------------------------------------ C API (ctypes, hw_models/rtl/device.py)
extern "C" {

struct dh_record { uint32_t opcode; int32_t unit; uint64_t issue, start, busy_end, done; };
static_assert(sizeof(dh_record) == sizeof(Record), "record layout");

void* dh_create(const char* fst_path) {
  try {
    return new Harness(fst_path);
  } catch (...) {
    return nullptr;
  }
}
void dh_destroy(void* h) { delete static_cast<Harness*>(h); }

const char* dh_target() { return DH_TARGET; }
uint64_t dh_cycles(void* h) { return static_cast<Harness*>(h)->cycle; }
int dh_error_kind(void* h) { return static_cast<Harness*>(h)->err_kind; }
const char* dh_error(void* h) {
  Harness* H = static_cast<Harness*>(h);
  return H->err_kind ? H->err.c_str() : H->last_csb_err.c_str();
}

int dh_write_reg(void* h, uint32_t addr, uint32_t value) {
  return static_cast<Harness*>(h)->csb(true, addr, value, nullptr);
}
int dh_read_reg(void* h, uint32_t addr, uint32_t* value) {
  return static_cast<Harness*>(h)->csb(false, addr, 0, value);
}

static int host_mem(Harness* H, uint64_t addr, uint64_t n, const char* what) {
  if (H->stopped) return H->err_kind;
  if (n && region_of(addr, n) < 0) {
    char b[160];
    std::snprintf(b, sizeof b, "host %s of %llu bytes at %#llx: outside every region or across a region end", what,
                  (unsigned long long)n, (unsigned long long)addr);
    H->last_csb_err = b;
    return E_ADDRESS;
  }
  return OK;
}

int dh_write_mem(void* h, uint64_t addr, const uint8_t* data, uint64_t n) {
  Harness* H = static_cast<Harness*>(h);
  if (int e = host_mem(H, addr, n, "write_mem")) return e;
  H->mem.write(addr, data, n);
  return H->idle(DH_HOST_RTT_CYCLES + (n + DH_HOST_BYTES_PER_CYCLE - 1) / DH_HOST_BYTES_PER_CYCLE);
}

int dh_read_mem(void* h, uint64_t addr, uint8_t* out, uint64_t n) {
  Harness* H = static_cast<Harness*>(h);
  if (int e = host_mem(H, addr, n, "read_mem")) return e;
  H->mem.read(addr, out, n);
  return H->idle(DH_HOST_RTT_CYCLES + (n + DH_HOST_BYTES_PER_CYCLE - 1) / DH_HOST_BYTES_PER_CYCLE);
}

// run n cycles with no host traffic
int dh_step(void* h, uint64_t n) { return static_cast<Harness*>(h)->idle(n); }

// the host's wait(): poll STATUS (a round trip each) until 0; E_TIMEOUT past limit cycles
int dh_wait(void* h, uint64_t limit, uint64_t* polls) {
  Harness* H = static_cast<Harness*>(h);
  uint64_t t0 = H->cycle;
  *polls = 0;
  for (;;) {
    uint32_t s = 0;
    if (int e = H->csb(false, DH_REG_STATUS, 0, &s)) return e;
    ++*polls;
    if (s == 0) return OK;
    if (H->cycle - t0 > limit) {
      char b[160];
      std::snprintf(b, sizeof b, "device still busy (STATUS %#x) after %llu cycles of polling from cycle %llu", s,
                    (unsigned long long)(H->cycle - t0), (unsigned long long)t0);
      H->err = b; H->err_kind = E_TIMEOUT;
      int k = E_TIMEOUT;
      H->last_csb_err = b;
      H->err_kind = OK;
      return k;
    }
  }
}

uint64_t dh_num_records(void* h) { return static_cast<Harness*>(h)->records.size(); }
uint64_t dh_get_records(void* h, uint64_t from, dh_record* out, uint64_t n) {
  Harness* H = static_cast<Harness*>(h);
  uint64_t k = 0;
  for (uint64_t i = from; i < H->records.size() && k < n; ++i, ++k) std::memcpy(&out[k], &H->records[i], sizeof(Record));
  return k;
}
uint32_t dh_error_info(void* h) { return static_cast<Harness*>(h)->m->error_info; }
uint64_t dh_last_push(void* h) { return static_cast<Harness*>(h)->last_push; }
uint64_t dh_host_reg_accesses(void* h) { return static_cast<Harness*>(h)->host_reg_accesses; }

// per channel (hbm channels, then ddr): bytes and busy cycles
int dh_channels(void* h, uint64_t* bytes, uint64_t* busy) {
  Harness* H = static_cast<Harness*>(h);
  for (size_t c = 0; c < H->chans.size(); ++c) { bytes[c] = H->chans[c].bytes; busy[c] = H->chans[c].busy(); }
  return (int)H->chans.size();
}
void dh_flush(void* h) {
#if VM_TRACE
  Harness* H = static_cast<Harness*>(h);
  if (H->fst) H->fst->flush();
#else
  (void)h;
#endif
}

}  // extern "C"
