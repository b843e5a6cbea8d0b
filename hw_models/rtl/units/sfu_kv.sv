// sfu_kv: the SFU's kv_append (doc/isa.md 7.5 "kv_append", section 6 "KV cache" layout, section 9 opcode 0x26):
// an exact copy cache[h, pos+m, :] = src[m, h, :] of fp16 rows of D*2 bytes (D a multiple of 16, so every
// row is a whole number of 32-byte units), heads head_stride bytes apart in the cache.
//
// Dataflow: after the checks, the whole source [M, HKV, D] is requested as one contiguous range (split only
// into requests of at most 1024 beats); the response beats are consumed as they arrive. Each beat is cut
// at source-row boundaries into "pieces" (a run of 32-byte units of one row inside one beat); a piece is
// rotated to byte 0 and written as one write beat at its cache address with a strobe over its bytes. So a
// beat costs one cycle per row that it touches, and read requests, piece cutting and writes overlap.
// Cycles: about S/PORT_BYTES + (rows crossing beats) + a few; >= the formula ceil(M*HKV*D/SFU_LANES) is not
// needed: with PORT_BYTES >= 4*SFU_LANES the copy beats the formula unless rows are shorter than a beat.
//
// Cycle behaviour: start (1 cycle: the check products) -> 1 check cycle (field rules and operand ranges, no
// memory traffic) -> copy -> done (busy low, done high for one cycle; a new start is taken in that cycle).
// err_code: 1 a size field (m, kv_heads, d, capacity) is 0; 3 an operand range lies outside every region or
// crosses a region end; 4 d is not a multiple of 16; 5 capacity > MAX_SEQ_LEN or pos + m > capacity;
// 6 head_stride is not a multiple of 32; 7 kv_heads > 1 and head_stride < capacity*d*2 (heads overlap).
// With err the unit does no memory traffic.
module sfu_kv import dlavm_pkg::*; (
  input  logic                  clk, rst_n,
  input  logic                  start,
  /* verilator lint_off UNUSEDSIGNAL */  // opcode, wait mask and the words past kv_append's last field
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
  localparam int UNITS = PB / 32;                 // 32-byte units per beat
  localparam int UW = $clog2(UNITS + 1);          // width of a unit count 0..UNITS
  localparam logic [63:0] MAX_REQ = 64'(PB) * 64'd1024;

  // [a, a+n) lies inside one region (n > 0); 128-bit arithmetic so no product can wrap.
  function automatic logic in_region(input logic [127:0] a, input logic [127:0] n);
    logic [127:0] dh, dd, ds;   // offsets from each region's base (huge after a wrap when a < base)
    dh = a - 128'($unsigned(HBM_BASE));
    dd = a - 128'($unsigned(DDR_BASE));
    ds = a - 128'($unsigned(SRAM_BASE));
    return (dh < 128'($unsigned(HBM_SIZE))  && dh + n <= 128'($unsigned(HBM_SIZE)))
        || (dd < 128'($unsigned(DDR_SIZE))  && dd + n <= 128'($unsigned(DDR_SIZE)))
        || (ds < 128'($unsigned(SRAM_SIZE)) && ds + n <= 128'($unsigned(SRAM_SIZE)));
  endfunction

  typedef enum logic [2:0] {S_IDLE, S_CHK2, S_RUN, S_FIN} state_t;
  state_t st;

  // latched fields
  logic [31:0] f_src, f_m, f_hkv, f_d, f_pos, f_hs, f_cap;
  // check products (registered in the start cycle)
  logic [127:0] c_srcb, c_dst0, c_dstspan, c_capb;
  logic [7:0]   code_q;
  logic         err_q;

  // copy state
  logic [63:0]       rq_addr, rq_left;           // next read request address, source bytes not yet requested
  logic [UW-1:0]     pos_u;                       // next unconsumed 32-byte unit in the head beat
  logic [31:0]       row_left_u;                  // units left in the current row
  logic [31:0]       h_cnt;                       // head of the current row
  logic [63:0]       rows_left;                   // rows (m, h) not finished
  logic [63:0]       tok_addr, row_ptr;           // cache address of (pos+m, head 0) and of the next unit
  logic [31:0]       row_units;                   // D*2/32

  // write holding register
  logic                  wv_q;
  logic [MEM_AW-1:0]     wa_q;
  logic [PORT_BITS-1:0]  wd_q;
  logic [PORT_BYTES-1:0] ws_q;

  // the instruction's fields as the start cycle sees them
  logic [31:0] n_dst, n_m, n_hkv, n_d, n_pos, n_hs, n_cap;
  assign n_dst = insn[F_KV_APPEND_DST_LO +: 32];
  assign n_m   = insn[F_KV_APPEND_M_LO +: 32];
  assign n_hkv = insn[F_KV_APPEND_KV_HEADS_LO +: 32];
  assign n_d   = insn[F_KV_APPEND_D_LO +: 32];
  assign n_pos = insn[F_KV_APPEND_POS_LO +: 32];
  assign n_hs  = insn[F_KV_APPEND_HEAD_STRIDE_LO +: 32];
  assign n_cap = insn[F_KV_APPEND_CAPACITY_LO +: 32];

  logic [7:0] chk_code;                           // the field rules (S_CHK2): 0 = legal
  always_comb begin
    if (f_m == 0 || f_hkv == 0 || f_d == 0 || f_cap == 0) chk_code = 8'd1;
    else if (f_d[3:0] != 4'd0) chk_code = 8'd4;
    else if (64'(f_cap) > 64'(MAX_SEQ_LEN) || 64'(f_pos) + 64'(f_m) > 64'(f_cap)) chk_code = 8'd5;
    else if (f_hs[4:0] != 5'd0) chk_code = 8'd6;
    else if (f_hkv > 32'd1 && 128'(f_hs) < c_capb) chk_code = 8'd7;
    else if (!in_region({91'd0, f_src, 5'd0}, c_srcb) || !in_region(c_dst0, c_dstspan)) chk_code = 8'd3;
    else chk_code = 8'd0;
  end

  assign busy = (st != S_IDLE) && (st != S_FIN);
  assign done = (st == S_FIN);
  assign err = (st == S_FIN) && err_q;
  assign err_code = (st == S_FIN) ? code_q : 8'd0;

  assign wr_valid = wv_q;
  assign wr_addr  = wa_q;
  assign wr_data  = wd_q;
  assign wr_strb  = ws_q;

  // ---- read requests: the whole source, in requests of at most MAX_REQ bytes
  logic [63:0] rq_n;
  assign rq_n = (rq_left > MAX_REQ) ? MAX_REQ : rq_left;
  assign rd_req_valid = (st == S_RUN) && (rq_left != 64'd0);
  assign rd_req_addr  = MEM_AW'(rq_addr);
  assign rd_req_bytes = 32'(rq_n);

  // ---- piece of the head beat: units [pos_u, pos_u + n) of the current row
  logic [UW-1:0] beat_left_u, piece_u;
  logic          can_load, take, beat_end, row_end;
  assign beat_left_u = UW'(UNITS) - pos_u;
  assign piece_u = (32'(beat_left_u) <= row_left_u) ? beat_left_u : UW'(row_left_u);
  assign can_load = !wv_q || wr_ready;
  assign take = (st == S_RUN) && (rows_left != 64'd0) && rd_rsp_valid && can_load;
  assign row_end = (32'(piece_u) == row_left_u);
  // the beat is finished when the piece reaches its end, or when this is the very last row's end
  assign beat_end = (piece_u == beat_left_u) || (row_end && rows_left == 64'd1 && rd_rsp_last);
  assign rd_rsp_ready = take && beat_end;

  logic [PORT_BITS-1:0]  piece_data;
  logic [PORT_BYTES-1:0] piece_strb;
  assign piece_data = rd_rsp_data >> {pos_u, 8'b0};
  assign piece_strb = {PORT_BYTES{1'b1}} >> {UW'(UW'(UNITS) - piece_u), 5'b0};

  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      st <= S_IDLE;
      err_q <= 1'b0; code_q <= 8'd0;
      wv_q <= 1'b0; wa_q <= '0; wd_q <= '0; ws_q <= '0;
      f_src <= '0; f_m <= '0; f_hkv <= '0; f_d <= '0; f_pos <= '0; f_hs <= '0; f_cap <= '0;
      c_srcb <= '0; c_dst0 <= '0; c_dstspan <= '0; c_capb <= '0;
      rq_addr <= '0; rq_left <= '0; pos_u <= '0; row_left_u <= '0; h_cnt <= '0; rows_left <= '0;
      tok_addr <= '0; row_ptr <= '0; row_units <= '0;
    end else begin
      if (wv_q && wr_ready) wv_q <= 1'b0;
      case (st)
        S_IDLE, S_FIN: begin
          if (start) begin
            f_src <= insn[F_KV_APPEND_SRC_LO +: 32];
            f_m   <= insn[F_KV_APPEND_M_LO +: 32];
            f_hkv <= insn[F_KV_APPEND_KV_HEADS_LO +: 32];
            f_d   <= insn[F_KV_APPEND_D_LO +: 32];
            f_pos <= insn[F_KV_APPEND_POS_LO +: 32];
            f_hs  <= insn[F_KV_APPEND_HEAD_STRIDE_LO +: 32];
            f_cap <= insn[F_KV_APPEND_CAPACITY_LO +: 32];
            // the check products, in the start cycle
            c_srcb    <= 128'(n_m) * 128'(n_hkv) * 128'(n_d) * 128'd2;
            c_dst0    <= {91'd0, n_dst, 5'd0} + 128'(n_pos) * 128'(n_d) * 128'd2;
            c_dstspan <= 128'(n_hkv - 32'd1) * 128'(n_hs) + 128'(n_m) * 128'(n_d) * 128'd2;
            c_capb    <= 128'(n_cap) * 128'(n_d) * 128'd2;
            st <= S_CHK2;
          end else begin
            st <= S_IDLE;
          end
        end
        S_CHK2: begin
          // the field rules; without error the copy starts in the next cycle
          err_q <= (chk_code != 8'd0);
          code_q <= chk_code;
          st <= (chk_code != 8'd0) ? S_FIN : S_RUN;
          rq_addr <= {27'd0, f_src, 5'd0};
          rq_left <= (chk_code != 8'd0) ? 64'd0 : 64'(c_srcb);
          pos_u <= '0;
          row_units <= f_d >> 4;
          row_left_u <= f_d >> 4;
          h_cnt <= '0;
          rows_left <= 64'(f_m) * 64'(f_hkv);
          tok_addr <= 64'(c_dst0);
          row_ptr <= 64'(c_dst0);
        end
        S_RUN: begin
          if (rd_req_valid && rd_req_ready) begin
            rq_addr <= rq_addr + rq_n;
            rq_left <= rq_left - rq_n;
          end
          if (take) begin
            wv_q <= 1'b1;
            wa_q <= MEM_AW'(row_ptr);
            wd_q <= piece_data;
            ws_q <= piece_strb;
            pos_u <= beat_end ? '0 : pos_u + piece_u;
            if (row_end) begin
              rows_left <= rows_left - 64'd1;
              row_left_u <= row_units;
              if (h_cnt + 32'd1 == f_hkv) begin
                h_cnt <= '0;
                tok_addr <= tok_addr + {27'd0, row_units, 5'd0};
                row_ptr <= tok_addr + {27'd0, row_units, 5'd0};
              end else begin
                h_cnt <= h_cnt + 32'd1;
                row_ptr <= row_ptr - {27'd0, row_units - row_left_u, 5'd0} + 64'(f_hs);
              end
            end else begin
              row_left_u <= row_left_u - 32'(piece_u);
              row_ptr <= row_ptr + {27'd0, 32'(piece_u), 5'd0};
            end
          end
          if (rows_left == 64'd0 && rq_left == 64'd0 && (!wv_q || wr_ready)) st <= S_FIN;
        end
        default: st <= S_IDLE;
      endcase
    end
  end

endmodule
