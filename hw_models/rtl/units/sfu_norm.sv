// sfu_norm: rmsnorm (opcode 0x20) and layernorm (0x21), doc/isa.md 7.5 and section 9, bit-exact with
// hw_models/units/sfu.py. Per row x (fp32 of the fp16 input), c = cols, T = TREE_LANES:
//   rmsnorm:   ms = tree_sum(x ⊗ x) ⊘ c;  r = 1 ⊘ sqrt(ms ⊕ eps);  y = fp16((x ⊗ r) ⊗ γ)
//   layernorm: μ = tree_sum(x) ⊘ c;  d = x ⊖ μ;  v = tree_sum(d ⊗ d) ⊘ c;  r = 1 ⊘ sqrt(v ⊕ eps);
//              y = fp16(((d ⊗ r) ⊗ γ) ⊕ β)
// (tree_sum: the 7.1 tree, tree_sum_seq; ⊘ and sqrt: fp32_div/fp32_sqrt, correctly rounded.)
// Structure: sfu_row_reader streams the rows into NSLOT row-buffer slots (fp32) and hands γ (β) over as raw
// beats (kept fp16, one beat per word). The lanes (SFU_LANES elements per cycle) run passes over whole rows:
// rmsnorm 2 per row (x⊗x reduction, output), layernorm 3 (x reduction, d⊗d reduction, output). Rows are
// pipelined: a pass is issued for the oldest row that is ready for one (output before second reduction
// before first reduction), so the next rows' reductions run while a row's reduction result goes through the
// tree and the scalar chain; passes follow each other without a gap. A first reduction may start on a row
// that is still streaming in (it follows the reader word by word). The scalar chain (ms = S ⊘ c, ⊕ eps,
// sqrt, 1 ⊘; layernorm's μ = S ⊘ c) works on the tree results in order and keeps μ and r per slot.
// Outputs go through sfu_row_writer (contiguous, large beats).
// Cycle behaviour: rows * passes * ceil(cols/SFU_LANES) issue cycles when the rows arrive fast enough, plus
// the first data's arrival and the last row's reduction (tree_sum_seq ~6, scalar chain 4, pipeline 2) and
// the write of the last beat.
// err_code: 1 = rows or cols is 0 (section 8), 2 = cols > ROWCAP (longer than the on-chip row buffer: a
// limit of this implementation, no memory traffic then).
module sfu_norm import dlavm_pkg::*; #(
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
  localparam int L   = SFU_LANES;
  localparam int LB  = $clog2(L);
  localparam int WD  = ROWCAP / L;
  localparam int WB  = $clog2(WD);
  localparam int FD  = 16;
  localparam int NSLOT = 4;
  localparam int SB  = $clog2(NSLOT);
  localparam int GPB = PORT_BYTES / (2 * L);           // lane groups per gamma beat
  localparam int GSH = $clog2(GPB);
  localparam int GW  = ROWCAP * 2 / PORT_BYTES;        // gamma beats
  localparam int GWB = $clog2(GW);
  localparam int QD  = 8;                              // scalar-chain queue (<= NSLOT entries in use)
  localparam int QB  = $clog2(QD);

  // ---- fields (latched at start)
  logic              ln;                       // layernorm
  logic [MEM_AW-1:0] src, dst, gam, bet;
  logic [31:0]       rows, cols, eps;
  logic [31:0]       nw;                       // words per row
  logic [31:0]       cf;                       // fp32(cols), exact (cols <= ROWCAP <= 2^24)

  function automatic logic [31:0] u2f(input logic [31:0] v);   // exact for v < 2^24
    int p;
    logic [22:0] m;
    p = 0;
    for (int i = 0; i < 24; i++) if (v[i]) p = i;
    m = 23'(v << (23 - p));
    return (v == 0) ? 32'd0 : {1'b0, 8'(127 + p), m};
  endfunction

  typedef enum logic [1:0] {S_IDLE, S_RUN, S_FIN, S_ERR} st_t;
  st_t st;
  logic        rd_go;
  logic        rd_idle, wr_idle, gb_ok;
  logic [NSLOT-1:0] slot_full;
  logic [31:0] fill_row, fill_words;

  // word 0 bits 15:8 (wait mask) are the front end's; the words past the last field are reserved (checked there)
  logic unused_insn_bits;
  assign unused_insn_bits = ^{insn[INSN_BITS-1:288], insn[63:8]};

  // ---- start: legality
  logic        e_zero, e_long;
  logic [31:0] f_rows, f_cols;
  assign f_rows = (insn[7:0] == OP_LAYERNORM) ? insn[F_LAYERNORM_ROWS_LO +: 32] : insn[F_RMSNORM_ROWS_LO +: 32];
  assign f_cols = (insn[7:0] == OP_LAYERNORM) ? insn[F_LAYERNORM_COLS_LO +: 32] : insn[F_RMSNORM_COLS_LO +: 32];
  assign e_zero = (f_rows == 0) || (f_cols == 0);
  assign e_long = (f_cols > 32'(ROWCAP));

  // ---- passes: issue (s0) -> buffer read (s1) -> lane math (s2) -> tree / writer
  localparam logic [1:0] T_SUMX = 2'd0, T_SQ = 2'd1, T_OUT = 2'd2;
  // the pass being issued
  logic            cur_v;
  logic [1:0]      cur_tag;
  logic [SB-1:0]   cur_slot;
  logic [31:0]     w;                          // word within the pass
  // row pointers: next row of each pass kind (advanced when the pass is chosen), rows released, and rows
  // whose μ / r the scalar chain has produced
  logic [31:0]     rp1, rp2, ro, rrel, mu_done, r_done;
  logic            is_v, is_first, is_last, cur_can, cur_end;
  logic [LB:0]     is_n;
  logic [31:0]     left;
  assign left = cols - (w << LB);
  assign is_n = (left >= 32'(L)) ? (LB+1)'(L) : (LB+1)'(left);

  logic            s1_v, s1_first, s1_last;  logic [1:0] s1_tag;  logic [LB:0] s1_n;  logic [SB-1:0] s1_slot;
  logic            s2_v, s2_first, s2_last;  logic [1:0] s2_tag;  logic [LB:0] s2_n;
  logic [L*32-1:0] s2_red;
  logic [L*16-1:0] s2_out;
  logic [L*32-1:0] x_rd, red_c;
  logic [L*16-1:0] g_rd, b_rd, out_c;

  // ---- row buffers (bank b, fp32): x in NSLOT slots; γ, β as fp16 beats
  logic [SFU_LANES-1:0]    w_en;
  logic [SFU_LANES*WB-1:0] w_addr;
  logic [SFU_LANES*32-1:0] w_data;
  logic [SB-1:0]           w_slot;
  logic                    g_en, g_bet;
  logic [GWB-1:0]          g_addr;
  logic [PORT_BITS-1:0]    g_data;
  for (genvar b = 0; b < L; b++) begin : g_bank
    logic [31:0] xm [NSLOT*WD];
    always_ff @(posedge clk) begin
      if (w_en[b]) xm[{w_slot, w_addr[b*WB +: WB]}] <= w_data[b*32 +: 32];
      x_rd[b*32 +: 32] <= xm[{cur_slot, w[WB-1:0]}];
    end
  end
  logic [PORT_BITS-1:0] gm [GW];
  logic [PORT_BITS-1:0] bm [GW];
  logic [GWB-1:0]       gw_a;
  logic [GSH+LB+3:0]    gw_s;                  // bit offset of the word's group in its beat
  assign gw_a = GWB'(w >> GSH);
  assign gw_s = {w[GSH-1:0], (LB+4)'(0)};
  always_ff @(posedge clk) begin
    if (g_en && !g_bet) gm[g_addr] <= g_data;
    if (g_en && g_bet)  bm[g_addr] <= g_data;
    g_rd <= gm[gw_a][gw_s +: L*16];
    b_rd <= bm[gw_a][gw_s +: L*16];
  end

  logic [NSLOT*32-1:0] unused_row_max;         // the reader's softmax row maximum: not used by the norms
  logic [NSLOT-1:0]    unused_row_nan;
  logic                rel_v;
  sfu_row_reader #(.ROWCAP(ROWCAP), .NSLOT(NSLOT)) u_rd (
    .clk, .rst_n, .go(rd_go), .src_addr(src), .gam_addr(gam), .bet_addr(bet),
    .use_gam(1'b1), .use_bet(ln), .in_fp32(1'b0), .rows, .cols,
    .rd_req_valid, .rd_req_ready, .rd_req_addr, .rd_req_bytes, .rd_rsp_valid, .rd_rsp_ready, .rd_rsp_data,
    .rd_rsp_last, .w_en, .w_addr, .w_data, .w_slot, .g_en, .g_bet, .g_addr, .g_data, .gb_ok, .slot_full,
    .release_v(rel_v), .release_slot(cur_slot), .fill_row, .fill_words,
    .causal(1'b0), .pos0(32'd0), .mq(32'd1),
    .row_max(unused_row_max), .row_nan(unused_row_nan), .idle(rd_idle));

  logic [$clog2(FD):0] wcount;
  sfu_row_writer #(.FD(FD)) u_wr (
    .clk, .rst_n, .go(rd_go), .dst_addr(dst), .total(64'(rows) * 64'(cols)),
    .push(s2_v && s2_tag == T_OUT), .push_n(s2_n), .push_data(s2_out), .count(wcount),
    .wr_valid, .wr_ready, .wr_addr, .wr_data, .wr_strb, .idle(wr_idle));

  // ---- per-slot scalars
  logic [31:0] mu_s [NSLOT];
  logic [31:0] rinv_s [NSLOT];
  logic [31:0] mu, rinv;
  assign mu   = mu_s[s1_slot];
  assign rinv = rinv_s[s1_slot];

  // ---- lane math (stage s1 -> s2)
  for (genvar i = 0; i < L; i++) begin : g_lane
    logic [31:0] x, a0, m1, m2, y, mul_b, gf, bf;
    logic [15:0] y16;
    assign x = x_rd[32*i +: 32];
    fp16_to_fp32 u_gc (.a(g_rd[16*i +: 16]), .y(gf));
    fp16_to_fp32 u_bc (.a(b_rd[16*i +: 16]), .y(bf));
    fp32_add u_sub (.a(x), .b({~mu[31], mu[30:0]}), .y(a0));          // x ⊖ μ (layernorm)
    logic [31:0] xa;
    assign xa    = ln ? a0 : x;
    assign mul_b = (s1_tag == T_OUT) ? rinv : xa;
    fp32_mul u_m1 (.a(xa), .b(mul_b), .y(m1));                        // x⊗x, d⊗d, x⊗r, d⊗r
    fp32_mul u_m2 (.a(m1), .b(gf), .y(m2));                           // ⊗ γ
    fp32_add u_ab (.a(m2), .b(bf), .y(y));                            // ⊕ β (layernorm)
    fp32_to_fp16 u_h (.a(ln ? y : m2), .y(y16));
    assign red_c[32*i +: 32] = (i < 32'(s1_n)) ? ((s1_tag == T_SUMX) ? x : m1) : 32'd0;
    assign out_c[16*i +: 16] = y16;
  end

  logic        t_ov;
  logic [31:0] t_sum;
  tree_sum_seq #(.L(L), .T(TREE_LANES)) u_tree (
    .clk, .rst_n, .in_valid(s2_v && s2_tag != T_OUT), .in_first(s2_first), .in_last(s2_last),
    .in_lanes(s2_red), .out_valid(t_ov), .out_sum(t_sum));

  // ---- scalar chain: a queue of reductions in issue order (kind, slot; the sum when the tree gives it)
  logic          q_mean [QD];                  // layernorm's x reduction (μ only)
  logic [SB-1:0] q_slot [QD];
  logic [31:0]   q_sum  [QD];
  logic [QB-1:0] q_tw, q_sw, q_rd;             // tag write (at issue), sum write (tree), read
  logic [2:0]    cstep;
  logic [31:0]   sc_t;
  logic          c_go;                         // the chain has a reduction to work on
  assign c_go = (q_rd != q_sw);
  logic [31:0] dv_a, dv_b, dv_y, ad_y, sq_y;
  assign dv_a = (cstep == 3'd0) ? q_sum[q_rd] : 32'h3F800000;
  assign dv_b = (cstep == 3'd0) ? cf : sc_t;
  fp32_div  u_div (.a(dv_a), .b(dv_b), .y(dv_y));
  fp32_add  u_add (.a(sc_t), .b(eps), .y(ad_y));
  fp32_sqrt u_sqt (.a(sc_t), .y(sq_y));

  // ---- pass choice: the oldest row ready for a pass
  logic          nx_v;
  logic [1:0]    nx_tag;
  logic [SB-1:0] nx_slot;
  always_comb begin
    nx_v = 1'b1; nx_tag = T_OUT; nx_slot = ro[SB-1:0];
    if (ro < rows && ro < r_done && gb_ok) begin
      nx_tag = T_OUT; nx_slot = ro[SB-1:0];
    end else if (ln && rp2 < mu_done) begin
      nx_tag = T_SQ; nx_slot = rp2[SB-1:0];
    end else if (rp1 < rows && rp1 - rrel < 32'(NSLOT) && (slot_full[rp1[SB-1:0]] || fill_row == rp1)) begin
      nx_tag = ln ? T_SUMX : T_SQ; nx_slot = rp1[SB-1:0];
    end else begin
      nx_v = 1'b0;
    end
  end

  logic can_out;
  assign can_out = (32'(wcount) + 32'd3 <= 32'(FD));
  always_comb begin
    unique case (cur_tag)
      T_OUT:   cur_can = can_out;
      default: cur_can = (cur_tag == T_SQ && ln) || slot_full[cur_slot] || (w < fill_words);
    endcase
    is_v     = (st == S_RUN) && cur_v && cur_can;
    is_first = (w == 0);
    is_last  = (w == nw - 1);
    cur_end  = is_v && is_last;
    rel_v    = cur_end && cur_tag == T_OUT;
  end

  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      st <= S_IDLE; busy <= 1'b0; done <= 1'b0; err <= 1'b0; err_code <= '0; rd_go <= 1'b0;
      ln <= 1'b0; src <= '0; dst <= '0; gam <= '0; bet <= '0; rows <= '0; cols <= '0; eps <= '0;
      nw <= '0; cf <= '0; cstep <= '0; sc_t <= '0;
      cur_v <= 1'b0; cur_tag <= T_OUT; cur_slot <= '0; w <= '0;
      rp1 <= '0; rp2 <= '0; ro <= '0; rrel <= '0; mu_done <= '0; r_done <= '0;
      q_tw <= '0; q_sw <= '0; q_rd <= '0;
      s1_v <= 1'b0; s1_first <= 1'b0; s1_last <= 1'b0; s1_tag <= '0; s1_n <= '0; s1_slot <= '0;
      s2_v <= 1'b0; s2_first <= 1'b0; s2_last <= 1'b0; s2_tag <= '0; s2_n <= '0; s2_red <= '0; s2_out <= '0;
    end else begin
      done <= 1'b0; err <= 1'b0; rd_go <= 1'b0;
      // pipeline
      s1_v <= is_v; s1_tag <= cur_tag; s1_first <= is_first; s1_last <= is_last; s1_n <= is_n;
      s1_slot <= cur_slot;
      s2_v <= s1_v; s2_tag <= s1_tag; s2_first <= s1_first; s2_last <= s1_last; s2_n <= s1_n;
      s2_red <= red_c; s2_out <= out_c;
      // pass sequencing: the next pass follows the current one without a gap
      if (is_v) w <= is_last ? 32'd0 : w + 32'd1;
      if (st == S_RUN && !rd_go && (!cur_v || cur_end)) begin
        cur_v <= nx_v;
        if (nx_v) begin
          cur_tag <= nx_tag; cur_slot <= nx_slot;
          unique case (nx_tag)
            T_OUT:   ro <= ro + 32'd1;
            T_SUMX:  rp1 <= rp1 + 32'd1;
            default: if (ln) rp2 <= rp2 + 32'd1; else rp1 <= rp1 + 32'd1;   // T_SQ
          endcase
        end
      end
      if (rel_v) rrel <= rrel + 32'd1;
      // scalar chain queue
      if (cur_end && cur_tag != T_OUT) begin
        q_mean[q_tw] <= (cur_tag == T_SUMX);
        q_slot[q_tw] <= cur_slot;
        q_tw <= q_tw + QB'(1);
      end
      if (t_ov) begin
        q_sum[q_sw] <= t_sum;
        q_sw <= q_sw + QB'(1);
      end
      if (c_go) begin
        cstep <= cstep + 3'd1;
        unique case (cstep)
          3'd0: begin
            sc_t <= dv_y;
            if (q_mean[q_rd]) begin
              mu_s[q_slot[q_rd]] <= dv_y; mu_done <= mu_done + 32'd1; cstep <= 3'd0; q_rd <= q_rd + QB'(1);
            end
          end
          3'd1: sc_t <= ad_y;
          3'd2: sc_t <= sq_y;
          default: begin
            rinv_s[q_slot[q_rd]] <= dv_y; r_done <= r_done + 32'd1; cstep <= 3'd0; q_rd <= q_rd + QB'(1);
          end
        endcase
      end
      unique case (st)
        S_IDLE: if (start) begin
          busy <= 1'b1;
          ln   <= (insn[7:0] == OP_LAYERNORM);
          src  <= MEM_AW'({insn[F_RMSNORM_SRC_LO +: 32], 5'b0});
          dst  <= MEM_AW'({insn[F_RMSNORM_DST_LO +: 32], 5'b0});
          gam  <= MEM_AW'({insn[F_RMSNORM_GAMMA_LO +: 32], 5'b0});
          bet  <= MEM_AW'({insn[F_LAYERNORM_BETA_LO +: 32], 5'b0});
          eps  <= (insn[7:0] == OP_LAYERNORM) ? insn[F_LAYERNORM_EPS_LO +: 32] : insn[F_RMSNORM_EPS_LO +: 32];
          rows <= f_rows; cols <= f_cols;
          nw   <= (f_cols + 32'(L - 1)) >> LB;
          cf   <= u2f(f_cols);
          w    <= '0; cur_v <= 1'b0;
          rp1 <= '0; rp2 <= '0; ro <= '0; rrel <= '0; mu_done <= '0; r_done <= '0;
          q_tw <= '0; q_sw <= '0; q_rd <= '0; cstep <= '0;
          if (e_zero || e_long) begin
            st <= S_ERR; err_code <= e_zero ? 8'd1 : 8'd2;
          end else begin
            st <= S_RUN; err_code <= 8'd0; rd_go <= 1'b1;
          end
        end
        S_ERR: begin st <= S_IDLE; busy <= 1'b0; done <= 1'b1; err <= 1'b1; end
        S_RUN: if (ro == rows && !cur_v) st <= S_FIN;
        S_FIN: if (rd_idle && wr_idle && !s1_v && !s2_v) begin st <= S_IDLE; busy <= 1'b0; done <= 1'b1; end
        default: st <= S_IDLE;
      endcase
    end
  end
endmodule
