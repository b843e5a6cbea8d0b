// sfu: the special-function unit as the front end sees it (doc/isa.md 7.5, section 9 opcodes 0x20..0x26).
// It decodes the opcode (insn[7:0]) of the started instruction and starts exactly one sub-block:
//   rmsnorm, layernorm -> sfu_norm; softmax -> sfu_softmax; eltwise, act -> sfu_elt; rope -> sfu_rope;
//   kv_append -> sfu_kv.
// Every sub-block has the unit interface of doc/rtl.md (start/insn/busy/done/err/err_code + one read and one
// write memory port); the wrapper muxes the two memory ports to the running sub-block (the others see
// ready/valid low) and forwards its done/err/err_code.
// Cycle behaviour: start is passed to the sub-block in the same cycle (no extra latency); busy is high from the
// cycle after start until the sub-block's done (done/err/err_code are the sub-block's, combinational);
// a new start is accepted in the done cycle or later.
// err_code: the sub-block's code (see each sub-block's header comment); 8'hFF = an opcode that is not an SFU
// opcode (done with err one cycle after start, no memory traffic).
module sfu import dlavm_pkg::*; (
  input  logic                  clk, rst_n,
  input  logic                  start,
  input  logic [INSN_BITS-1:0]  insn,
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
  localparam int NS = 5;   // sub-blocks: 0 norm, 1 softmax, 2 elt, 3 rope, 4 kv
  localparam int BAD = NS; // "no sub-block": unknown opcode

  logic [7:0] opc;
  assign opc = insn[7:0];
  logic [2:0] sel_new, sel_q;
  always_comb begin
    unique case (opc)
      OP_RMSNORM, OP_LAYERNORM: sel_new = 3'd0;
      OP_SOFTMAX:               sel_new = 3'd1;
      OP_ELTWISE, OP_ACT:       sel_new = 3'd2;
      OP_ROPE:                  sel_new = 3'd3;
      OP_KV_APPEND:             sel_new = 3'd4;
      default:                  sel_new = 3'(BAD);
    endcase
  end

  logic [NS-1:0]         s_start, s_busy, s_done, s_err;
  logic [7:0]            s_code [NS];
  logic [NS-1:0]         s_rq_valid, s_rq_ready, s_rs_valid, s_rs_ready, s_wr_valid, s_wr_ready;
  logic [MEM_AW-1:0]     s_rq_addr [NS];
  logic [31:0]           s_rq_bytes [NS];
  logic [MEM_AW-1:0]     s_wr_addr [NS];
  logic [PORT_BITS-1:0]  s_wr_data [NS];
  logic [PORT_BYTES-1:0] s_wr_strb [NS];

  // ---- control: which sub-block runs
  logic active_q, bad_q;
  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      active_q <= 1'b0; bad_q <= 1'b0; sel_q <= 3'(BAD);
    end else begin
      bad_q <= 1'b0;
      if (start && !active_q) begin
        sel_q <= sel_new;
        if (sel_new == 3'(BAD)) bad_q <= 1'b1;
        else active_q <= 1'b1;
      end else if (active_q && s_done[sel_q]) begin
        active_q <= 1'b0;
      end
    end
  end

  always_comb begin
    for (int i = 0; i < NS; i++) s_start[i] = start && !active_q && (sel_new == 3'(i));
  end

  // (a sub-block's busy is high exactly until its done; the OR only keeps both signals in use)
  assign busy = active_q && (s_busy[sel_q] || !s_done[sel_q]);
  assign done = bad_q || (active_q && s_done[sel_q]);
  assign err  = bad_q || (active_q && s_err[sel_q]);
  assign err_code = bad_q ? 8'hFF : (active_q ? s_code[sel_q] : 8'h00);

  // ---- port mux
  always_comb begin
    rd_req_valid = 1'b0; rd_req_addr = '0; rd_req_bytes = '0; rd_rsp_ready = 1'b0;
    wr_valid = 1'b0; wr_addr = '0; wr_data = '0; wr_strb = '0;
    for (int i = 0; i < NS; i++) begin
      s_rq_ready[i] = 1'b0; s_rs_valid[i] = 1'b0; s_wr_ready[i] = 1'b0;
    end
    if (active_q && sel_q < 3'(NS)) begin
      rd_req_valid = s_rq_valid[sel_q];
      rd_req_addr  = s_rq_addr[sel_q];
      rd_req_bytes = s_rq_bytes[sel_q];
      rd_rsp_ready = s_rs_ready[sel_q];
      wr_valid     = s_wr_valid[sel_q];
      wr_addr      = s_wr_addr[sel_q];
      wr_data      = s_wr_data[sel_q];
      wr_strb      = s_wr_strb[sel_q];
      s_rq_ready[sel_q] = rd_req_ready;
      s_rs_valid[sel_q] = rd_rsp_valid;
      s_wr_ready[sel_q] = wr_ready;
    end
  end

`define SFU_SUB(MOD, I) \
  MOD u_``MOD ( \
    .clk(clk), .rst_n(rst_n), .start(s_start[I]), .insn(insn), \
    .busy(s_busy[I]), .done(s_done[I]), .err(s_err[I]), .err_code(s_code[I]), \
    .rd_req_valid(s_rq_valid[I]), .rd_req_ready(s_rq_ready[I]), .rd_req_addr(s_rq_addr[I]), \
    .rd_req_bytes(s_rq_bytes[I]), .rd_rsp_valid(s_rs_valid[I]), .rd_rsp_ready(s_rs_ready[I]), \
    .rd_rsp_data(rd_rsp_data), .rd_rsp_last(rd_rsp_last), \
    .wr_valid(s_wr_valid[I]), .wr_ready(s_wr_ready[I]), .wr_addr(s_wr_addr[I]), \
    .wr_data(s_wr_data[I]), .wr_strb(s_wr_strb[I]));

  `SFU_SUB(sfu_norm, 0)
  `SFU_SUB(sfu_softmax, 1)
  `SFU_SUB(sfu_elt, 2)
  `SFU_SUB(sfu_rope, 3)
  `SFU_SUB(sfu_kv, 4)
`undef SFU_SUB
endmodule
