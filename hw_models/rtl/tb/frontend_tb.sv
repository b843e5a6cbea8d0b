// frontend_tb: test top for the front end (testbench code, not part of the core): frontend + dma_engine with
// the same CSB, fe_* and dma_* ports and the same error/dbg_* outputs as dlavm_core, and behavioural stand-ins
// for mvm, mat and sfu that touch no memory: a stand-in is busy for max(1, insn[171:160]) cycles (word 5,
// low 12 bits: eltwise/act `count`, mat_qk/mat_pv `m`, mvm `out`/32, ...) and then pulses done, so the
// start rule (wait bits, fences, queues, latencies) can be checked with known unit busy times. The mvm
// stand-in pulses res_valid with res_idx = its busy time and res_val = 32'h3F800000 at done (RESULT regs).
// An instruction whose word 5 bit 12 is set makes a stand-in report err (err_code 8'h5A) with its done.
module tb_stub_unit import dlavm_pkg::*; #(parameter bit RES = 1'b0) (
  input  logic                 clk, rst_n,
  input  logic                 start,
  input  logic [INSN_BITS-1:0] insn,
  output logic                 busy,
  output logic                 done,
  output logic                 err,
  output logic [7:0]           err_code,
  output logic                 res_valid,
  output logic [31:0]          res_idx,
  output logic [31:0]          res_val
);
  logic [11:0] left_q, dur_q;
  logic        bad_q;
  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      busy <= 1'b0; left_q <= '0; dur_q <= '0; bad_q <= 1'b0;
    end else if (start && (!busy || done)) begin
      busy   <= 1'b1;
      left_q <= (insn[160 +: 12] == 12'd0) ? 12'd1 : insn[160 +: 12];
      dur_q  <= (insn[160 +: 12] == 12'd0) ? 12'd1 : insn[160 +: 12];
      bad_q  <= insn[172];
    end else if (done) begin
      busy <= 1'b0;
    end else if (busy) begin
      left_q <= left_q - 12'd1;
    end
  end
  assign done      = busy && left_q == 12'd1;
  assign err       = done && bad_q;
  assign err_code  = err ? 8'h5A : 8'h00;
  assign res_valid = RES && done;
  assign res_idx   = {20'd0, dur_q};
  assign res_val   = 32'h3F800000;
endmodule

module frontend_tb import dlavm_pkg::*; (
  input  logic                  clk, rst_n,
  input  logic                  csb_valid,
  input  logic                  csb_write,
  input  logic [11:0]           csb_addr,
  input  logic [31:0]           csb_wdata,
  output logic                  csb_ready,
  output logic [31:0]           csb_rdata,
  output logic                  csb_err,
  output logic                  fe_rd_req_valid,
  input  logic                  fe_rd_req_ready,
  output logic [MEM_AW-1:0]     fe_rd_req_addr,
  output logic [31:0]           fe_rd_req_bytes,
  input  logic                  fe_rd_rsp_valid,
  output logic                  fe_rd_rsp_ready,
  input  logic [PORT_BITS-1:0]  fe_rd_rsp_data,
  input  logic                  fe_rd_rsp_last,
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
  output logic                  error,
  output logic [31:0]           error_info,
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

  logic [2:0]  nres_valid;
  logic [31:0] nres_idx [3];
  logic [31:0] nres_val [3];
  for (genvar u = 1; u < NUM_UNITS; u++) begin : g_stub
    tb_stub_unit #(.RES(u == UNIT_MVM)) u_stub (
      .clk, .rst_n, .start(u_start[u]), .insn(u_insn[u]), .busy(u_busy[u]), .done(u_done[u]),
      .err(u_err[u]), .err_code(u_err_code[u]),
      .res_valid(nres_valid[u-1]), .res_idx(nres_idx[u-1]), .res_val(nres_val[u-1])
    );
  end
  assign res_valid = nres_valid[UNIT_MVM-1];
  assign res_idx   = nres_idx[UNIT_MVM-1];
  assign res_val   = nres_val[UNIT_MVM-1];
endmodule
