"""The HBM pseudo-channel model (doc/simulator.md, "HBM model"): each effect moves a transfer's cycles the
right way and by the hand-computed amount; targets without the model time exactly as before."""
import numpy as np
import pytest

from dlavm.target import TargetError, builtin_names, get_target, target_from_dict
from dlavm.target.hbm_model import channel_cycles, row_miss_cycles, turnaround_cycles
from dlavm.target.insn_model import Access
from hw_models.timing import TimingModel

#: tiny: 200 MHz, 32-byte ports, 256-byte bursts, 10 cycles of set-up, 1 cycle per burst, 2 channels
#: interleaved every 64 bytes. With no burst overhead a transfer is 10 + ceil(b / 32) on the port side.
TINY = get_target("tiny")
PLAIN = TINY.replace(burst_overhead_cycles=0)
HBM = TINY.hbm_base


def old_formula(t, b):
    """The channel formula before the HBM model: set-up, width, bursts."""
    return t.dma_setup_cycles + -(-b // 32) + -(-b // t.dma_burst_bytes) * t.burst_overhead_cycles


def test_tiny_has_no_hbm_effect_and_times_as_before():
    for f in ("hbm_mts", "hbm_trefi_ns", "hbm_trfc_ns", "hbm_trcd_ns", "hbm_trp_ns", "hbm_trtw_ns", "hbm_twtr_ns",
              "hbm_outstanding", "aux_fetch_bytes"):
        assert getattr(TINY, f) == 0, f
    b = np.array([0, 1, 31, 32, 33, 255, 256, 257, 4096, 100_000], dtype=np.int64)
    got = channel_cycles(TINY, b, 32)
    assert got.tolist() == [0] + [old_formula(TINY, int(x)) for x in b[1:]]
    assert channel_cycles(TINY, 1000, 32) == old_formula(TINY, 1000)   # scalar (an instruction model's load)


def test_hbm_side_rate_binds_when_slower_than_the_port():
    # 400 MT/s x 8 bytes at 200 MHz = 16 bytes per cycle, half the 32-byte port: 3200 bytes take 200 cycles
    t = PLAIN.replace(hbm_mts=400)
    assert channel_cycles(PLAIN, 3200, 32) == 10 + 100
    assert channel_cycles(t, 3200, 32) == 10 + 200
    # faster than the port: the port binds, nothing changes
    assert channel_cycles(PLAIN.replace(hbm_mts=1800), 3200, 32) == 10 + 100


def test_refresh_steals_its_fraction_of_the_hbm_side():
    # tRFC 200 ns every tREFI 1000 ns: the HBM side delivers 80% of its rate, 200 cycles become 250
    t = PLAIN.replace(hbm_mts=400, hbm_trefi_ns=1000, hbm_trfc_ns=200)
    assert channel_cycles(t, 3200, 32) == 10 + 250
    # PG276's HBM2 4H figures (tRFC 260 ns every 3.9 us) cost 1/15 of the HBM side: 6.67%
    t = PLAIN.replace(hbm_mts=400, hbm_trefi_ns=3900, hbm_trfc_ns=260)
    assert channel_cycles(t, 3200, 32) == 10 + -(-200 * 3900 // (3900 - 260))


def test_each_operand_stream_opens_a_row():
    # tRP + tRCD = 15 + 15 ns = 6 cycles at 200 MHz, once per operand stream on the channel
    t = PLAIN.replace(hbm_trp_ns=15, hbm_trcd_ns=15)
    assert row_miss_cycles(t) == 6
    assert channel_cycles(t, 320, 32) == 10 + 6 + 10
    assert channel_cycles(t, 320, 32, streams=3) == 10 + 18 + 10
    assert channel_cycles(t, 320, 32, hbm=False) == 10 + 10   # the DDR port has no HBM rows


def test_outstanding_bursts_cap_the_port():
    # one 256-byte burst in flight per 10-cycle round trip: 25.6 bytes per cycle < the 32-byte port
    t = PLAIN.replace(hbm_outstanding=1)
    assert channel_cycles(t, 2560, 32) == 10 + 100       # ceil(2560 * 10 / 256)
    assert channel_cycles(PLAIN, 2560, 32) == 10 + 80
    # two in flight: 51.2 bytes per cycle, the port binds again
    assert channel_cycles(PLAIN.replace(hbm_outstanding=2), 2560, 32) == 10 + 80


def test_read_write_turnaround_on_a_channel():
    # tRTW 10 ns = 2 cycles, tWTR 15 ns = 3 cycles; 64 bytes at HBM offset 0 and 128 are both on channel 0
    t = PLAIN.replace(hbm_trtw_ns=10, hbm_twtr_ns=15)
    assert turnaround_cycles(t) == (2, 3)
    tm, ref = TimingModel(t), TimingModel(PLAIN)
    both = [Access("src", HBM, 64), Access("dst", HBM + 128, 64, write=True)]
    read = [Access("src", HBM, 64)]
    busy = []
    for m in (tm, ref):
        r1 = m.schedule("dma", "dma", frozenset(), 0, both, 0, 0)      # reads then writes: one switch
        r2 = m.schedule("dma", "dma", frozenset(), 0, read, 0, 0)      # after writes: write-to-read
        r3 = m.schedule("dma", "dma", frozenset(), 0, read, 0, 0)      # read after read: none
        busy.append([r.busy_end - r.start for r in (r1, r2, r3)])
    assert busy[1] == [10 + 4, 10 + 2, 10 + 2]
    assert busy[0] == [10 + 4 + 2, 10 + 2 + 3, 10 + 2]


def test_aux_fetch_is_a_read_on_the_streams_memory():
    # 8 entries x 64 bytes from DDR (32 bytes per cycle, 256-byte bursts of 1 cycle): 16 + 2 cycles after
    # the 10-cycle set-up; entry k is on chip at 10 + ceil(18 * (k + 1) / 8)
    tm = TimingModel(TINY)
    ddr = TINY.figures.region("ddr").base
    ready = tm.fetch(100, ddr, 8 * 64, 8)
    assert ready == [100 + 10 + -(-18 * (k + 1) // 8) for k in range(8)]
    assert tm.chan_free[-1] == 100 + 10 + 18      # the DDR port is busy for the fetch
    assert tm.fetch(0, TINY.sram_base, 128, 2) == [0, 0]   # on chip: free


def test_aux_fetch_delays_a_stream_only_when_charged():
    from hw_models.simulator import Simulator
    from dlavm.target.isa import make

    def aux_cycles(t):
        sim = Simulator(t, functional=False)
        sim.run_program([make("nop")] * 32)
        return sim.aux_events, sim.cycles_now

    _, free = aux_cycles(TINY)
    _, charged = aux_cycles(TINY.replace(aux_fetch_bytes=64))
    assert charged > free


def test_u280_is_built_in_and_names_both_peaks():
    assert "u280" in builtin_names()
    t = get_target("u280")
    fig = t.figures
    assert (t.hbm_channels, t.hbm_channel_bytes * t.hbm_channels) == (32, 8 << 30)
    assert t.ddr_bytes == 32 << 30
    assert fig.hbm_gbytes_per_s == pytest.approx(204.8)          # port peak: 32 x 256 bit x 200 MHz
    assert fig.device_hbm_gbytes_per_s == pytest.approx(460.8)   # device peak: 32 x 1800 MT/s x 64 bit
    pct = fig.roofline_percents(1000, 0, 1000 * fig.hbm_bytes_per_cycle)
    assert pct["port"] == pytest.approx(100.0)
    assert pct["device"] == pytest.approx(100.0 * 204.8 / 460.8)


def test_a_target_without_the_model_has_device_peak_equal_to_port_peak():
    fig = TINY.figures
    assert fig.device_hbm_gbytes_per_s == fig.hbm_gbytes_per_s


@pytest.mark.parametrize("fields, names", [
    ({"hbm_trfc_ns": 260}, "hbm_trfc_ns"),                                       # refresh without an interval
    ({"hbm_mts": 1800, "hbm_trefi_ns": 300, "hbm_trfc_ns": 300}, "hbm_trfc_ns"),  # takes all the time
    ({"hbm_trefi_ns": 3900, "hbm_trfc_ns": 260}, "hbm_trfc_ns"),                 # no HBM side to refresh
    ({"aux_fetch_bytes": 32}, "aux_fetch_bytes"),
    ({"hbm_mts": -1}, "hbm_mts"),
    ({"hbm_outstanding": 1.5}, "hbm_outstanding"),
    ({"hbm_pc_bits": 0}, "hbm_pc_bits"),
    ({"hbm_twtr_ns": True}, "hbm_twtr_ns"),
])
def test_malformed_hbm_fields_get_a_one_line_error_naming_the_field(fields, names):
    with pytest.raises(TargetError) as exc:
        target_from_dict({"name": "bad", **fields}, base=TINY)
    msg = str(exc.value)
    assert names in msg and "\n" not in msg


def test_a_target_file_may_leave_the_hbm_fields_out():
    d = {k: v for k, v in TINY.to_dict().items() if not k.startswith("hbm_t") and k not in
         ("hbm_mts", "hbm_pc_bits", "hbm_outstanding", "aux_fetch_bytes")}
    t = target_from_dict(d)
    assert t == TINY and t.fingerprint() == TINY.fingerprint()


def test_refresh_starves_the_port_only_beyond_the_outstanding_window():
    # 1800 MT/s: the HBM side (67 bytes per cycle under refresh) never binds at a 32-byte port; tREFI 3.9 us =
    # 780 cycles, tRFC 260 ns = 52. Two 256-byte bursts in flight (51 bytes per cycle: no cap) hold 16 port
    # cycles of data: the port starves 36 cycles each 780, so 100 cycles of stream take 100 + ceil(3600 / 744)
    t = PLAIN.replace(hbm_mts=1800, hbm_trefi_ns=3900, hbm_trfc_ns=260, hbm_outstanding=2)
    assert channel_cycles(t, 3200, 32) == 10 + 100 + 5
    # a window of 16 bursts (128 port cycles) covers the 52: no loss; nor without a limit (hbm_outstanding 0)
    assert channel_cycles(t.replace(hbm_outstanding=16), 3200, 32) == 10 + 100
    assert channel_cycles(t.replace(hbm_outstanding=0), 3200, 32) == 10 + 100


@pytest.mark.parametrize("name", ["vcu128", "u280", "tiny"])
def test_one_formula_on_ints_arrays_and_symbolic_sizes(name):
    # the compiler evaluates the fills on dlavm.sym expressions, the timing model on arrays: the same numbers
    from dlavm import sym
    t = get_target(name)
    t = t.replace(hbm_outstanding=1) if name == "u280" else t   # a refresh that reaches the port, too
    n = sym.Var("hbm_n", 1, 1 << 22)
    expr = channel_cycles(t, n, 32)
    sizes = [1, 31, 32, 33, 1023, 1024, 1025, 5000, 65536, 1 << 22]
    arr = channel_cycles(t, np.array(sizes, dtype=np.int64), 32)
    for k, b in enumerate(sizes):
        assert sym.evaluate(expr, {"hbm_n": b}) == channel_cycles(t, b, 32) == arr[k], b
