// dlavm_core: the accelerator core (doc/isa.md sections 3-5): the front end (CSB registers, AUX sequencer,
// decode, per-unit queues, start rule) and the four execution units dma_engine, mvm_engine, mat_engine, sfu.
// Memory is outside: every unit has one read and one write port (the memory-port contract of doc/rtl.md),
// flattened here as <p>_rd_req_valid ... <p>_wr_strb for p in dma, mvm, mat, sfu; the front end has a read
// port only (fe_*, the AUX instruction fetch).
//
// Cycle behaviour: a CSB handshake (csb_valid & csb_ready) completes at the rising edge; csb_rdata/csb_err are
// valid in the handshake cycle (combinational from the registers). A write of INSN_PUSH issues the staged
// instruction in its handshake cycle (csb_ready stays low while the target queue is full: the host stall of
// doc/simulator.md); that instruction can start in the same cycle. Start/completion timing: see frontend.sv.
//
// error / error_info: sticky until reset, the first error only:
//   error_info[7:0]   opcode of the offending instruction (0 for an AUX stream error)
//   error_info[10:8]  where: 0 dma, 1 mvm, 2 mat, 3 sfu (the unit's err with done), 4 front end
//   error_info[23:16] code: the unit's err_code (see its module comment), or for the front end:
//                     1 unknown opcode, 2 reserved bits set, 3 enum out of range (illegal instruction),
//                     4 AUX base not 64-byte aligned (unaligned), 5 AUX stream outside every region (address),
//                     6 AUX fetch response framing (rd_rsp_last) wrong (memory protocol)
//   error_info[31:24], [15:11] zero.
// dbg_* outputs: per-cycle events for the harness's per-instruction records (issue order is global; a unit
// starts, finishes and completes its instructions in its issue order): dbg_issue pulses when an instruction
// is issued (dbg_issue_op its opcode), dbg_start[u] = unit u starts one, dbg_done[u] = its busy ends,
// dbg_complete[u] = it completes (done + the unit's *_LATENCY cycles).
module dlavm_core import dlavm_pkg::*; (
  input  logic                  clk, rst_n,
  // CSB (doc/isa.md section 3)
  input  logic                  csb_valid,
  input  logic                  csb_write,
  input  logic [11:0]           csb_addr,
  input  logic [31:0]           csb_wdata,
  output logic                  csb_ready,
  output logic [31:0]           csb_rdata,
  output logic                  csb_err,
  // front end (AUX fetch): read port only
  output logic                  fe_rd_req_valid,
  input  logic                  fe_rd_req_ready,
  output logic [MEM_AW-1:0]     fe_rd_req_addr,
  output logic [31:0]           fe_rd_req_bytes,
  input  logic                  fe_rd_rsp_valid,
  output logic                  fe_rd_rsp_ready,
  input  logic [PORT_BITS-1:0]  fe_rd_rsp_data,
  input  logic                  fe_rd_rsp_last,
  // dma
  output logic                  dma_rd_req_valid,
  input  logic                  dma_rd_req_ready,
  output logic [MEM_AW-1:0]     dma_rd_req_addr,
  output logic [31:0]           dma_rd_req_bytes,
  input  logic                  dma_rd_rsp_valid,
  output logic                  dma_rd_rsp_ready,
  input  logic [PORT_BITS-1:0]  dma_rd_rsp_data,
  input  logic                  dma_rd_rsp_last,
  output logic                  dma_wr_valid,
  input  logic                  dma_wr_ready,
  output logic [MEM_AW-1:0]     dma_wr_addr,
  output logic [PORT_BITS-1:0]  dma_wr_data,
  output logic [PORT_BYTES-1:0] dma_wr_strb,
  // mvm
  output logic                  mvm_rd_req_valid,
  input  logic                  mvm_rd_req_ready,
  output logic [MEM_AW-1:0]     mvm_rd_req_addr,
  output logic [31:0]           mvm_rd_req_bytes,
  input  logic                  mvm_rd_rsp_valid,
  output logic                  mvm_rd_rsp_ready,
  input  logic [PORT_BITS-1:0]  mvm_rd_rsp_data,
  input  logic                  mvm_rd_rsp_last,
  output logic                  mvm_wr_valid,
  input  logic                  mvm_wr_ready,
  output logic [MEM_AW-1:0]     mvm_wr_addr,
  output logic [PORT_BITS-1:0]  mvm_wr_data,
  output logic [PORT_BYTES-1:0] mvm_wr_strb,
  // mat
  output logic                  mat_rd_req_valid,
  input  logic                  mat_rd_req_ready,
  output logic [MEM_AW-1:0]     mat_rd_req_addr,
  output logic [31:0]           mat_rd_req_bytes,
  input  logic                  mat_rd_rsp_valid,
  output logic                  mat_rd_rsp_ready,
  input  logic [PORT_BITS-1:0]  mat_rd_rsp_data,
  input  logic                  mat_rd_rsp_last,
  output logic                  mat_wr_valid,
  input  logic                  mat_wr_ready,
  output logic [MEM_AW-1:0]     mat_wr_addr,
  output logic [PORT_BITS-1:0]  mat_wr_data,
  output logic [PORT_BYTES-1:0] mat_wr_strb,
  // sfu
  output logic                  sfu_rd_req_valid,
  input  logic                  sfu_rd_req_ready,
  output logic [MEM_AW-1:0]     sfu_rd_req_addr,
  output logic [31:0]           sfu_rd_req_bytes,
  input  logic                  sfu_rd_rsp_valid,
  output logic                  sfu_rd_rsp_ready,
  input  logic [PORT_BITS-1:0]  sfu_rd_rsp_data,
  input  logic                  sfu_rd_rsp_last,
  output logic                  sfu_wr_valid,
  input  logic                  sfu_wr_ready,
  output logic [MEM_AW-1:0]     sfu_wr_addr,
  output logic [PORT_BITS-1:0]  sfu_wr_data,
  output logic [PORT_BYTES-1:0] sfu_wr_strb,
  // sticky error
  output logic                  error,
  output logic [31:0]           error_info,
  // per-cycle events (harness records)
  output logic                  dbg_issue,
  output logic [7:0]            dbg_issue_op,
  output logic [NUM_UNITS-1:0]  dbg_start,
  output logic [NUM_UNITS-1:0]  dbg_done,
  output logic [NUM_UNITS-1:0]  dbg_complete
);
  logic [NUM_UNITS-1:0]                u_start, u_busy, u_done, u_err;
  logic [NUM_UNITS-1:0][INSN_BITS-1:0] u_insn;
  logic [NUM_UNITS-1:0][7:0]           u_err_code;
  logic                                res_valid;
  logic [31:0]                         res_idx, res_val;

  frontend u_fe (
    .clk, .rst_n,
    .csb_valid, .csb_write, .csb_addr, .csb_wdata, .csb_ready, .csb_rdata, .csb_err,
    .rd_req_valid(fe_rd_req_valid), .rd_req_ready(fe_rd_req_ready), .rd_req_addr(fe_rd_req_addr),
    .rd_req_bytes(fe_rd_req_bytes), .rd_rsp_valid(fe_rd_rsp_valid), .rd_rsp_ready(fe_rd_rsp_ready),
    .rd_rsp_data(fe_rd_rsp_data), .rd_rsp_last(fe_rd_rsp_last),
    .u_start, .u_insn, .u_busy, .u_done, .u_err, .u_err_code,
    .res_valid, .res_idx, .res_val,
    .error, .error_info,
    .dbg_issue, .dbg_issue_op, .dbg_complete
  );
  assign dbg_start = u_start;
  assign dbg_done  = u_done;

  dma_engine u_dma (
    .clk, .rst_n, .start(u_start[UNIT_DMA]), .insn(u_insn[UNIT_DMA]),
    .busy(u_busy[UNIT_DMA]), .done(u_done[UNIT_DMA]), .err(u_err[UNIT_DMA]), .err_code(u_err_code[UNIT_DMA]),
    .rd_req_valid(dma_rd_req_valid), .rd_req_ready(dma_rd_req_ready), .rd_req_addr(dma_rd_req_addr),
    .rd_req_bytes(dma_rd_req_bytes), .rd_rsp_valid(dma_rd_rsp_valid), .rd_rsp_ready(dma_rd_rsp_ready),
    .rd_rsp_data(dma_rd_rsp_data), .rd_rsp_last(dma_rd_rsp_last),
    .wr_valid(dma_wr_valid), .wr_ready(dma_wr_ready), .wr_addr(dma_wr_addr), .wr_data(dma_wr_data),
    .wr_strb(dma_wr_strb)
  );

  mvm_engine u_mvm (
    .clk, .rst_n, .start(u_start[UNIT_MVM]), .insn(u_insn[UNIT_MVM]),
    .busy(u_busy[UNIT_MVM]), .done(u_done[UNIT_MVM]), .err(u_err[UNIT_MVM]), .err_code(u_err_code[UNIT_MVM]),
    .rd_req_valid(mvm_rd_req_valid), .rd_req_ready(mvm_rd_req_ready), .rd_req_addr(mvm_rd_req_addr),
    .rd_req_bytes(mvm_rd_req_bytes), .rd_rsp_valid(mvm_rd_rsp_valid), .rd_rsp_ready(mvm_rd_rsp_ready),
    .rd_rsp_data(mvm_rd_rsp_data), .rd_rsp_last(mvm_rd_rsp_last),
    .wr_valid(mvm_wr_valid), .wr_ready(mvm_wr_ready), .wr_addr(mvm_wr_addr), .wr_data(mvm_wr_data),
    .wr_strb(mvm_wr_strb),
    .res_valid, .res_idx, .res_val
  );

  mat_engine u_mat (
    .clk, .rst_n, .start(u_start[UNIT_MAT]), .insn(u_insn[UNIT_MAT]),
    .busy(u_busy[UNIT_MAT]), .done(u_done[UNIT_MAT]), .err(u_err[UNIT_MAT]), .err_code(u_err_code[UNIT_MAT]),
    .rd_req_valid(mat_rd_req_valid), .rd_req_ready(mat_rd_req_ready), .rd_req_addr(mat_rd_req_addr),
    .rd_req_bytes(mat_rd_req_bytes), .rd_rsp_valid(mat_rd_rsp_valid), .rd_rsp_ready(mat_rd_rsp_ready),
    .rd_rsp_data(mat_rd_rsp_data), .rd_rsp_last(mat_rd_rsp_last),
    .wr_valid(mat_wr_valid), .wr_ready(mat_wr_ready), .wr_addr(mat_wr_addr), .wr_data(mat_wr_data),
    .wr_strb(mat_wr_strb)
  );

  sfu u_sfu (
    .clk, .rst_n, .start(u_start[UNIT_SFU]), .insn(u_insn[UNIT_SFU]),
    .busy(u_busy[UNIT_SFU]), .done(u_done[UNIT_SFU]), .err(u_err[UNIT_SFU]), .err_code(u_err_code[UNIT_SFU]),
    .rd_req_valid(sfu_rd_req_valid), .rd_req_ready(sfu_rd_req_ready), .rd_req_addr(sfu_rd_req_addr),
    .rd_req_bytes(sfu_rd_req_bytes), .rd_rsp_valid(sfu_rd_rsp_valid), .rd_rsp_ready(sfu_rd_rsp_ready),
    .rd_rsp_data(sfu_rd_rsp_data), .rd_rsp_last(sfu_rd_rsp_last),
    .wr_valid(sfu_wr_valid), .wr_ready(sfu_wr_ready), .wr_addr(sfu_wr_addr), .wr_data(sfu_wr_data),
    .wr_strb(sfu_wr_strb)
  );
endmodule
