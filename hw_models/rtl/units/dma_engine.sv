// dma_engine: the `dma` instruction (doc/isa.md section 9, opcode 0x08; hw_models/units/dma.py): a 2-D copy of
// `rows` rows of `row_bytes` bytes from src (row r at src + r*src_stride) to dst (row r at dst + r*dst_stride),
// any region to any region. Unit interface and memory ports of doc/rtl.md.
//
// Legality (section 8), checked in the start cycle, before any memory traffic; err with done, err_code:
//   1  row_bytes, src_stride or dst_stride not a multiple of 32 (unaligned access)
//   2  the source block [src, src + (rows-1)*src_stride + row_bytes) not inside one region (address error)
//   3  the destination block likewise (address error)
//   4  a read response whose rd_rsp_last does not match the request framing (memory protocol error)
// rows = 0 or row_bytes = 0 copies nothing (no checks of the ranges, as the simulator).
//
// Datapath: the copy is a sequence of segments: one segment of rows*row_bytes bytes when both sides are
// contiguous (rows <= 1, or src_stride = dst_stride = row_bytes), else one segment per row. The read side
// issues one request per segment (split into chunks of CHUNK bytes, a multiple of PORT_BYTES, for very
// large copies) as fast as the memory accepts requests; each read beat is written, unchanged, as one
// write beat at dst_segment + beat*PORT_BYTES (strobes cut the segment's last beat): beat i of a request at A
// holds bytes A+i*PB.., so no realignment is needed. Read data passes straight to the write port
// (rd_rsp_ready = wr_ready, wr_valid = rd_rsp_valid): one beat per cycle when the memory keeps up, i.e. the
// timing model's ceil(rows*row_bytes/hbm_bytes_per_cycle) (PORT_BYTES = every HBM channel's width) plus the
// memory's latency; a strided copy whose row_bytes is not a multiple of PORT_BYTES uses a partial beat
// per row.
// Cycle behaviour: start in cycle s (fields latched); the first read request in s+1; done is asserted in
// the cycle the last write beat is accepted (combinational from wr_ready), or in s+1 for an error or an
// empty copy; busy is high from s+1 through the done cycle. A new start is accepted in the done cycle.
// Overlapping source and destination: the copy streams forward with reads ahead of writes, so it equals the
// simulator's read-everything-then-write result when dst <= src (or no overlap); dst > src with overlap is
// not supported (the compiler emits no such copy).
module dma_engine import dlavm_pkg::*; (
  input  logic                  clk, rst_n,
  input  logic                  start,
  /* verilator lint_off UNUSEDSIGNAL */  // only words 2..7 hold dma fields (opcode/wait are the front end's)
  input  logic [INSN_BITS-1:0]  insn,
  /* verilator lint_on UNUSEDSIGNAL */
  output logic                  busy,
  output logic                  done,
  output logic                  err,
  output logic [7:0]            err_code,
  output logic                  rd_req_valid,
  input  logic                  rd_req_ready,
  output logic [MEM_AW-1:0]     rd_req_addr,
  output logic [31:0]           rd_req_bytes,
  input  logic                  rd_rsp_valid,
  output logic                  rd_rsp_ready,
  input  logic [PORT_BITS-1:0]  rd_rsp_data,
  input  logic                  rd_rsp_last,
  output logic                  wr_valid,
  input  logic                  wr_ready,
  output logic [MEM_AW-1:0]     wr_addr,
  output logic [PORT_BITS-1:0]  wr_data,
  output logic [PORT_BYTES-1:0] wr_strb
);
  localparam int PB = PORT_BYTES;
  localparam int CHUNK_BEATS = 1 << 14;
  localparam longint CHUNK = longint'(PB) * CHUNK_BEATS;   // bytes per read request, at most
  localparam int CBW = $clog2(CHUNK_BEATS);

  function automatic logic in_one_region(input logic [63:0] a, input logic [63:0] e);  // [a, e), e >= a
    return (a - $unsigned(HBM_BASE) < $unsigned(HBM_SIZE) && e - $unsigned(HBM_BASE) <= $unsigned(HBM_SIZE))
        || (a - $unsigned(DDR_BASE) < $unsigned(DDR_SIZE) && e - $unsigned(DDR_BASE) <= $unsigned(DDR_SIZE))
        || (a - $unsigned(SRAM_BASE) < $unsigned(SRAM_SIZE) && e - $unsigned(SRAM_BASE) <= $unsigned(SRAM_SIZE));
  endfunction

  // ---------------------------------------------------------------- decode + checks (start cycle)
  logic [63:0] f_src, f_dst;
  logic [31:0] f_rb, f_rows, f_ss, f_ds;
  logic        c_empty, c_contig;
  logic [7:0]  c_code;
  logic [63:0] c_seg_bytes, c_nseg;
  always_comb begin
    logic [63:0] span_s, span_d;
    f_src  = {27'd0, insn[F_DMA_SRC_LO +: F_DMA_SRC_W], 5'd0};
    f_dst  = {27'd0, insn[F_DMA_DST_LO +: F_DMA_DST_W], 5'd0};
    f_rb   = insn[F_DMA_ROW_BYTES_LO +: F_DMA_ROW_BYTES_W];
    f_rows = insn[F_DMA_ROWS_LO +: F_DMA_ROWS_W];
    f_ss   = insn[F_DMA_SRC_STRIDE_LO +: F_DMA_SRC_STRIDE_W];
    f_ds   = insn[F_DMA_DST_STRIDE_LO +: F_DMA_DST_STRIDE_W];
    c_empty  = f_rows == 32'd0 || f_rb == 32'd0;
    span_s   = 64'(f_rows - 32'd1) * 64'(f_ss) + 64'(f_rb);
    span_d   = 64'(f_rows - 32'd1) * 64'(f_ds) + 64'(f_rb);
    if (f_rb[4:0] != 5'd0 || f_ss[4:0] != 5'd0 || f_ds[4:0] != 5'd0) c_code = 8'd1;
    else if (!c_empty && !in_one_region(f_src, f_src + span_s))      c_code = 8'd2;
    else if (!c_empty && !in_one_region(f_dst, f_dst + span_d))      c_code = 8'd3;
    else                                                             c_code = 8'd0;
    c_contig    = f_rows <= 32'd1 || (f_ss == f_rb && f_ds == f_rb);
    c_seg_bytes = c_contig ? 64'(f_rows) * 64'(f_rb) : 64'(f_rb);
    c_nseg      = c_contig ? 64'd1 : 64'(f_rows);
  end

  // ---------------------------------------------------------------- state
  logic              active_q, quick_q;      // quick: error or empty copy, done in the next cycle
  logic [7:0]        code_q;
  logic [63:0]       seg_bytes_q, nseg_q;
  logic [MEM_AW-1:0] ss_q, ds_q;
  // read side
  logic [63:0]       rseg_q, roff_q;
  logic [MEM_AW-1:0] raddr_q;                // start of the current read segment
  // write side
  logic [63:0]       wseg_q, woff_q;
  logic [MEM_AW-1:0] waddr_q;
  logic [CBW-1:0]    wcbeat_q;               // beat within the current read chunk

  logic [63:0] r_left, r_len, w_left;
  logic        rd_fire, wr_fire, w_seg_end, w_chunk_end, last_beat, frame_bad;
  always_comb begin
    r_left = seg_bytes_q - roff_q;
    r_len  = (r_left > 64'(CHUNK)) ? 64'(CHUNK) : r_left;
    rd_req_valid = active_q && !quick_q && rseg_q != nseg_q;
    rd_req_addr  = raddr_q + roff_q[MEM_AW-1:0];
    rd_req_bytes = r_len[31:0];
    rd_fire      = rd_req_valid && rd_req_ready;

    w_left   = seg_bytes_q - woff_q;
    wr_valid = active_q && !quick_q && rd_rsp_valid;
    rd_rsp_ready = active_q && !quick_q && wr_ready;
    wr_addr  = waddr_q + woff_q[MEM_AW-1:0];
    wr_data  = rd_rsp_data;
    for (int j = 0; j < PB; j++) wr_strb[j] = 64'(j) < w_left;
    wr_fire     = wr_valid && wr_ready;
    w_seg_end   = w_left <= 64'(PB);
    w_chunk_end = w_seg_end || wcbeat_q == CBW'(CHUNK_BEATS - 1);
    last_beat   = w_seg_end && wseg_q == nseg_q - 64'd1;
    frame_bad   = wr_fire && (rd_rsp_last != w_chunk_end);

    done     = active_q && (quick_q || (wr_fire && (last_beat || frame_bad)));
    err      = done && (quick_q ? code_q != 8'd0 : frame_bad);
    err_code = !err ? 8'd0 : (quick_q ? code_q : 8'd4);
    busy     = active_q;
  end

  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      active_q <= 1'b0; quick_q <= 1'b0; code_q <= '0;
      seg_bytes_q <= '0; nseg_q <= '0; ss_q <= '0; ds_q <= '0;
      rseg_q <= '0; roff_q <= '0; raddr_q <= '0;
      wseg_q <= '0; woff_q <= '0; waddr_q <= '0; wcbeat_q <= '0;
    end else if (start && (!active_q || done)) begin
      active_q    <= 1'b1;
      quick_q     <= c_empty || c_code != 8'd0;
      code_q      <= c_code;
      seg_bytes_q <= c_seg_bytes;
      nseg_q      <= c_nseg;
      ss_q        <= MEM_AW'(f_ss);
      ds_q        <= MEM_AW'(f_ds);
      rseg_q <= '0; roff_q <= '0; raddr_q <= f_src[MEM_AW-1:0];
      wseg_q <= '0; woff_q <= '0; waddr_q <= f_dst[MEM_AW-1:0]; wcbeat_q <= '0;
    end else if (done) begin
      active_q <= 1'b0;
    end else if (active_q) begin
      if (rd_fire) begin
        if (roff_q + r_len == seg_bytes_q) begin
          rseg_q <= rseg_q + 64'd1; roff_q <= '0; raddr_q <= raddr_q + ss_q;
        end else begin
          roff_q <= roff_q + r_len;
        end
      end
      if (wr_fire) begin
        wcbeat_q <= w_chunk_end ? '0 : wcbeat_q + CBW'(1);
        if (w_seg_end) begin
          wseg_q <= wseg_q + 64'd1; woff_q <= '0; waddr_q <= waddr_q + ds_q;
        end else begin
          woff_q <= woff_q + 64'(PB);
        end
      end
    end
  end
endmodule
