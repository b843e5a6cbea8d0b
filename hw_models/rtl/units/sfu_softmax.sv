// sfu_softmax: softmax (opcode 0x22), doc/isa.md 7.5 / 7.6 and section 9, bit-exact with hw_models/units/sfu.py.
// Row r is query q = r mod m at position pos0 + q; with causal=1 column l is valid iff l <= pos0 + q, else
// all columns are valid. Per row x (fp32: the fp32 input with in_fp32, else fp32 of the fp16 input):
//   mx = max over valid x (exact; NaN if a valid x is NaN);  e_l = pwl_exp(x_l ⊖ mx) for valid l, +0 otherwise
//   (7.6 with the built-in ROM exp_slope/exp_icpt, EXP_LO, EXP_INV_STEP, EXP_NSEG of dlavm_pkg);
//   s = tree_sum(e) (7.1, tree_sum_seq);  y_l = fp16(e_l ⊘ s).
// Structure: sfu_row_reader streams the rows (one contiguous range, large requests) into NSLOT row-buffer
// slots (fp32) and computes each row's maximum over its valid columns while it streams in (the max pass is
// fused with the read); the lanes then run two passes over a row from its slot, SFU_LANES elements per cycle:
// exp + sum (e is not stored: the output pass recomputes it, bit-identically), output. Rows are pipelined:
// the output pass of the oldest row is issued as soon as its sum is known, else the next row's sum pass, so
// later rows' sum passes cover a row's trip through the pipeline and the tree, and passes follow each other
// without a gap; rows are read ahead into the free slots meanwhile. Pipeline: buffer read | x ⊖ mx |
// pwl_index | ROM + pwl_apply | ⊘ s, fp16; outputs go through sfu_row_writer.
// Cycle behaviour: rows * 2 * ceil(cols/SFU_LANES) issue cycles when enough rows are in flight, plus the
// first row's arrival (the read of one L-element group per cycle), the last row's sum (pipeline 4, tree ~6)
// and output pipeline (5) and the write of the last beat.
// err_code: 1 = rows, cols or m is 0 (section 8), 2 = cols > ROWCAP (longer than the on-chip row buffer: a
// limit of this implementation, no memory traffic then).
module sfu_softmax import dlavm_pkg::*; #(
  parameter int ROWCAP = 8192
) (
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
  localparam int L  = SFU_LANES;
  localparam int LB = $clog2(L);
  localparam int WD = ROWCAP / L;
  localparam int WB = $clog2(WD);
  localparam int FD = 16;
  localparam int DEPTH = 6;                    // issue .. writer push
  localparam logic [31:0] QNAN    = 32'h7FC00000;

  // word 0 bits 15:8 (wait mask) are the front end's; the bits outside the fields are reserved (checked there)
  logic unused_insn_bits;
  assign unused_insn_bits = ^{insn[INSN_BITS-1:256], insn[63:34], insn[31:8]};

  // ---- fields (latched at start)
  logic              in_fp32, causal;
  logic [MEM_AW-1:0] src, dst;
  logic [31:0]       rows, cols, mq, pos0;
  logic [31:0]       nw;
  localparam int NSLOT = 8;                    // row slots: rows in flight (a row's sum takes ~11 cycles)
  localparam int SB = $clog2(NSLOT);
  localparam int QD = 16;                      // reduction tag queue (<= NSLOT entries in use)
  localparam int QB = $clog2(QD);

  typedef enum logic [1:0] {S_IDLE, S_RUN, S_FIN, S_ERR} st_t;
  st_t st;
  logic [NSLOT*32-1:0] row_max;
  logic [NSLOT-1:0]    row_nan;
  logic        rd_go, rd_idle, wr_idle, rel_v;
  logic [NSLOT-1:0] slot_full;

  logic [31:0] f_rows, f_cols, f_m;
  assign f_rows = insn[F_SOFTMAX_ROWS_LO +: 32];
  assign f_cols = insn[F_SOFTMAX_COLS_LO +: 32];
  assign f_m    = insn[F_SOFTMAX_M_LO +: 32];

  // ---- the pass being issued, row pointers (advanced when a pass is chosen), rows released, sums known
  localparam logic [1:0] T_SUM = 2'd1, T_OUT = 2'd2;
  logic            cur_v;
  logic [1:0]      cur_tag;
  logic [SB-1:0]   cur_slot;
  logic [31:0]     cur_qi;                   // the row's query index r mod m
  logic [31:0]     w;                        // word within the pass
  logic [31:0]     rp1, ro, rrel, s_done, qi1, qio;
  logic            is_v, is_first, is_last, cur_end;
  logic [LB:0]     is_n, is_c;               // lanes inside the row, lanes valid (causal)
  logic [31:0]     left;
  logic signed [35:0] lim;
  always_comb begin
    left = cols - (w << LB);
    is_n = (left >= 32'(L)) ? (LB+1)'(L) : (LB+1)'(left);
    lim  = $signed({4'd0, pos0}) + $signed({4'd0, cur_qi}) + 36'sd1 - $signed({4'd0, w << LB});
    if (!causal)                                is_c = is_n;
    else if (lim <= 36'sd0)                     is_c = '0;
    else if (lim < $signed({{(35-LB){1'b0}}, is_n})) is_c = (LB+1)'(lim);
    else                                        is_c = is_n;
  end

  // ---- pipeline registers
  logic            s1_v, s1_first, s1_last; logic [1:0] s1_tag; logic [LB:0] s1_n, s1_c; logic [SB-1:0] s1_slot;
  logic            s2_v, s2_first, s2_last; logic [1:0] s2_tag; logic [LB:0] s2_n, s2_c; logic [SB-1:0] s2_slot;
  logic            s3_v, s3_first, s3_last; logic [1:0] s3_tag; logic [LB:0] s3_n, s3_c; logic [SB-1:0] s3_slot;
  logic            s4_v, s4_first, s4_last; logic [1:0] s4_tag; logic [LB:0] s4_n;       logic [SB-1:0] s4_slot;
  logic            s5_v;                                        logic [LB:0] s5_n;
  logic [L*32-1:0] x_rd, s2_dd, s3_dd, s4_e;
  logic [L*10-1:0] s3_ent;
  logic [L*16-1:0] s5_out;
  logic [L*32-1:0] dd_c, e_c;
  logic [L*10-1:0] ent_c;
  logic [L*16-1:0] out_c;

  // ---- row buffer: NSLOT slots, bank b holds elements j = b mod L
  logic [SFU_LANES-1:0]    w_en;
  logic [SFU_LANES*WB-1:0] w_addr;
  logic [SFU_LANES*32-1:0] w_data;
  logic [SB-1:0]           w_slot;
  for (genvar b = 0; b < L; b++) begin : g_bank
    logic [31:0] xm [NSLOT*WD];
    always_ff @(posedge clk) begin
      if (w_en[b]) xm[{w_slot, w_addr[b*WB +: WB]}] <= w_data[b*32 +: 32];
      x_rd[b*32 +: 32] <= xm[{cur_slot, w[WB-1:0]}];
    end
  end

  // (no gamma / beta: the reader's beat outputs are unused)
  localparam int GWB = $clog2(ROWCAP * 2 / PORT_BYTES);
  logic                 unused_g_en, unused_g_bet, unused_gb_ok;
  logic [GWB-1:0]       unused_g_addr;
  logic [PORT_BITS-1:0] unused_g_data;
  logic [31:0]          unused_fill_row, unused_fill_words;
  sfu_row_reader #(.ROWCAP(ROWCAP), .NSLOT(NSLOT)) u_rd (
    .clk, .rst_n, .go(rd_go), .src_addr(src), .gam_addr(src), .bet_addr(src),
    .use_gam(1'b0), .use_bet(1'b0), .in_fp32, .rows, .cols,
    .rd_req_valid, .rd_req_ready, .rd_req_addr, .rd_req_bytes, .rd_rsp_valid, .rd_rsp_ready, .rd_rsp_data,
    .rd_rsp_last, .w_en, .w_addr, .w_data, .w_slot, .g_en(unused_g_en), .g_bet(unused_g_bet),
    .g_addr(unused_g_addr), .g_data(unused_g_data), .gb_ok(unused_gb_ok), .slot_full,
    .release_v(rel_v), .release_slot(cur_slot), .fill_row(unused_fill_row), .fill_words(unused_fill_words),
    .causal, .pos0, .mq, .row_max, .row_nan, .idle(rd_idle));
  logic unused_rd;
  assign unused_rd = ^{unused_g_en, unused_g_bet, unused_gb_ok, unused_g_addr, unused_g_data, unused_fill_row,
                       unused_fill_words};

  logic [$clog2(FD):0] wcount;
  sfu_row_writer #(.FD(FD)) u_wr (
    .clk, .rst_n, .go(rd_go), .dst_addr(dst), .total(64'(rows) * 64'(cols)),
    .push(s5_v), .push_n(s5_n), .push_data(s5_out), .count(wcount),
    .wr_valid, .wr_ready, .wr_addr, .wr_data, .wr_strb, .idle(wr_idle));

  // ---- per-slot scalars: the row maximum (the reader's, while the slot is full) and the row sum
  logic [31:0] sum_s [NSLOT];
  logic [31:0] mx_use, s_use;
  assign mx_use = row_nan[s1_slot] ? QNAN : row_max[32*s1_slot +: 32];
  assign s_use  = sum_s[s4_slot];

  // ---- lanes
  for (genvar i = 0; i < L; i++) begin : g_lane
    // s1 -> s2: d = x ⊖ mx
    fp32_add u_sub (.a(x_rd[32*i +: 32]), .b({~mx_use[31], mx_use[30:0]}), .y(dd_c[32*i +: 32]));
    // s2 -> s3: the 7.6 entry
    logic [31:0] ent;
    pwl_index u_idx (.x(s2_dd[32*i +: 32]), .lo(EXP_LO), .inv_step(EXP_INV_STEP), .nseg(32'(EXP_NSEG)),
                     .entry(ent));
    logic unused_ent_hi;                        // entries are 0 .. EXP_NSEG + 1 < 2^10
    assign unused_ent_hi = ^ent[31:10];
    assign ent_c[10*i +: 10] = ent[9:0];
    // s3 -> s4: e = pwl (ROM), +0 outside the valid lanes
    logic [31:0] ev;
    pwl_apply u_app (.x(s3_dd[32*i +: 32]), .slope(exp_slope(s3_ent[10*i +: 10])),
                     .icpt(exp_icpt(s3_ent[10*i +: 10])), .y(ev));
    assign e_c[32*i +: 32] = (i < 32'(s3_c)) ? ev : 32'd0;
    // s4 -> s5: y = fp16(e ⊘ s)
    logic [31:0] q;
    fp32_div u_div (.a(s4_e[32*i +: 32]), .b(s_use), .y(q));
    fp32_to_fp16 u_h (.a(q), .y(out_c[16*i +: 16]));
  end

  logic        t_ov;
  logic [31:0] t_sum;
  tree_sum_seq #(.L(L), .T(TREE_LANES)) u_tree (
    .clk, .rst_n, .in_valid(s4_v && s4_tag == T_SUM), .in_first(s4_first), .in_last(s4_last),
    .in_lanes(s4_e), .out_valid(t_ov), .out_sum(t_sum));

  // reductions in flight: their slots in issue order
  logic [SB-1:0] q_slot [QD];
  logic [QB-1:0] q_wr, q_rd;

  // ---- pass choice: the output pass of the oldest row once its sum is known, else the next row's sum pass
  logic          nx_v;
  logic [1:0]    nx_tag;
  logic [SB-1:0] nx_slot;
  logic [31:0]   nx_qi;
  always_comb begin
    nx_v = 1'b1; nx_tag = T_OUT; nx_slot = ro[SB-1:0]; nx_qi = qio;
    if (ro < rows && ro < s_done) begin
      nx_tag = T_OUT; nx_slot = ro[SB-1:0]; nx_qi = qio;
    end else if (rp1 < rows && rp1 - rrel < 32'(NSLOT) && slot_full[rp1[SB-1:0]]) begin
      nx_tag = T_SUM; nx_slot = rp1[SB-1:0]; nx_qi = qi1;
    end else begin
      nx_v = 1'b0;
    end
  end

  logic can_out;
  assign can_out = (32'(wcount) + 32'(DEPTH) <= 32'(FD));
  always_comb begin
    is_v     = (st == S_RUN) && cur_v && (cur_tag != T_OUT || can_out);
    is_first = (w == 0);
    is_last  = (w == nw - 1);
    cur_end  = is_v && is_last;
    rel_v    = cur_end && cur_tag == T_OUT;
  end

  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      st <= S_IDLE; busy <= 1'b0; done <= 1'b0; err <= 1'b0; err_code <= '0; rd_go <= 1'b0;
      in_fp32 <= 1'b0; causal <= 1'b0; src <= '0; dst <= '0; rows <= '0; cols <= '0; mq <= '0; pos0 <= '0;
      nw <= '0; w <= '0;
      cur_v <= 1'b0; cur_tag <= T_OUT; cur_slot <= '0; cur_qi <= '0;
      rp1 <= '0; ro <= '0; rrel <= '0; s_done <= '0; qi1 <= '0; qio <= '0; q_wr <= '0; q_rd <= '0;
      s1_v <= 1'b0; s1_first <= 1'b0; s1_last <= 1'b0; s1_tag <= '0; s1_n <= '0; s1_c <= '0; s1_slot <= '0;
      s2_v <= 1'b0; s2_first <= 1'b0; s2_last <= 1'b0; s2_tag <= '0; s2_n <= '0; s2_c <= '0; s2_slot <= '0;
      s3_v <= 1'b0; s3_first <= 1'b0; s3_last <= 1'b0; s3_tag <= '0; s3_n <= '0; s3_c <= '0; s3_slot <= '0;
      s4_v <= 1'b0; s4_first <= 1'b0; s4_last <= 1'b0; s4_tag <= '0; s4_n <= '0; s4_slot <= '0;
      s5_v <= 1'b0; s5_n <= '0;
      s2_dd <= '0; s3_dd <= '0; s3_ent <= '0; s4_e <= '0; s5_out <= '0;
    end else begin
      done <= 1'b0; err <= 1'b0; rd_go <= 1'b0;
      // pipeline
      s1_v <= is_v; s1_tag <= cur_tag; s1_first <= is_first; s1_last <= is_last; s1_n <= is_n; s1_c <= is_c;
      s1_slot <= cur_slot;
      s2_v <= s1_v; s2_tag <= s1_tag; s2_first <= s1_first; s2_last <= s1_last; s2_n <= s1_n; s2_c <= s1_c;
      s2_slot <= s1_slot; s2_dd <= dd_c;
      s3_v <= s2_v; s3_tag <= s2_tag; s3_first <= s2_first; s3_last <= s2_last;
      s3_n <= s2_n; s3_c <= s2_c; s3_slot <= s2_slot; s3_dd <= s2_dd; s3_ent <= ent_c;
      s4_v <= s3_v; s4_tag <= s3_tag; s4_first <= s3_first; s4_last <= s3_last; s4_n <= s3_n; s4_e <= e_c;
      s4_slot <= s3_slot;
      s5_v <= s4_v && s4_tag == T_OUT; s5_n <= s4_n; s5_out <= out_c;
      // pass sequencing: the next pass follows the current one without a gap
      if (is_v) w <= is_last ? 32'd0 : w + 32'd1;
      if (st == S_RUN && !rd_go && (!cur_v || cur_end)) begin
        cur_v <= nx_v;
        if (nx_v) begin
          cur_tag <= nx_tag; cur_slot <= nx_slot; cur_qi <= nx_qi;
          if (nx_tag == T_OUT) begin
            ro <= ro + 32'd1; qio <= (qio == mq - 32'd1) ? 32'd0 : qio + 32'd1;
          end else begin
            rp1 <= rp1 + 32'd1; qi1 <= (qi1 == mq - 32'd1) ? 32'd0 : qi1 + 32'd1;
          end
        end
      end
      if (rel_v) rrel <= rrel + 32'd1;
      if (cur_end && cur_tag == T_SUM) begin
        q_slot[q_wr] <= cur_slot; q_wr <= q_wr + QB'(1);
      end
      if (t_ov) begin
        sum_s[q_slot[q_rd]] <= t_sum; q_rd <= q_rd + QB'(1); s_done <= s_done + 32'd1;
      end
      unique case (st)
        S_IDLE: if (start) begin
          busy    <= 1'b1;
          in_fp32 <= insn[F_SOFTMAX_IN_FP32_LO];
          causal  <= insn[F_SOFTMAX_CAUSAL_LO];
          src     <= MEM_AW'({insn[F_SOFTMAX_SRC_LO +: 32], 5'b0});
          dst     <= MEM_AW'({insn[F_SOFTMAX_DST_LO +: 32], 5'b0});
          rows    <= f_rows; cols <= f_cols; mq <= f_m;
          pos0    <= insn[F_SOFTMAX_POS0_LO +: 32];
          nw      <= (f_cols + 32'(L - 1)) >> LB;
          w <= '0; cur_v <= 1'b0;
          rp1 <= '0; ro <= '0; rrel <= '0; s_done <= '0; qi1 <= '0; qio <= '0; q_wr <= '0; q_rd <= '0;
          if (f_rows == 0 || f_cols == 0 || f_m == 0) begin
            st <= S_ERR; err_code <= 8'd1;
          end else if (f_cols > 32'(ROWCAP)) begin
            st <= S_ERR; err_code <= 8'd2;
          end else begin
            st <= S_RUN; err_code <= 8'd0; rd_go <= 1'b1;
          end
        end
        S_ERR: begin st <= S_IDLE; busy <= 1'b0; done <= 1'b1; err <= 1'b1; end
        S_RUN: if (ro == rows && !cur_v) st <= S_FIN;
        S_FIN: if (rd_idle && wr_idle && !s1_v && !s2_v && !s3_v && !s4_v && !s5_v) begin
          st <= S_IDLE; busy <= 1'b0; done <= 1'b1;
        end
        default: st <= S_IDLE;
      endcase
    end
  end
endmodule
