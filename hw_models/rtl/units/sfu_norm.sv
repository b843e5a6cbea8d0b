// sfu_norm: rmsnorm (opcode 0x20) and layernorm (0x21), doc/isa.md 7.5 and section 9, bit-exact with
// hw_models/units/sfu.py. Per row x (fp32 of the fp16 input), c = cols, T = TREE_LANES:
//   rmsnorm:   ms = tree_sum(x ⊗ x) ⊘ c;  r = 1 ⊘ sqrt(ms ⊕ eps);  y = fp16((x ⊗ r) ⊗ γ)
//   layernorm: μ = tree_sum(x) ⊘ c;  d = x ⊖ μ;  v = tree_sum(d ⊗ d) ⊘ c;  r = 1 ⊘ sqrt(v ⊕ eps);
//              y = fp16(((d ⊗ r) ⊗ γ) ⊕ β)
// (tree_sum: the 7.1 tree, tree_sum_seq; ⊘ and sqrt: fp32_div/fp32_sqrt, correctly rounded.)
// Structure: sfu_row_reader loads γ (and β) once, then streams the rows into two row-buffer slots (fp32);
// the compute side runs the passes of a row from its slot, SFU_LANES elements per cycle: rmsnorm 2 passes
// (x⊗x reduction, output), layernorm 3 (x reduction, d⊗d reduction, output); the next row is read into the
// other slot meanwhile. Outputs go through sfu_row_writer (contiguous, large beats).
// Cycle behaviour: per row 2 (3) * ceil(cols/SFU_LANES) issue cycles + the reduction latency
// (tree_sum_seq, ~6) + 4 (5) scalar cycles + pipeline; the first row's read is not overlapped.
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
  localparam int L  = SFU_LANES;
  localparam int LB = $clog2(L);
  localparam int WD = ROWCAP / L;
  localparam int WB = $clog2(WD);
  localparam int FD = 16;

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

  typedef enum logic [3:0] {S_IDLE, S_WAIT, S_P1, S_R1, S_C, S_P2, S_R2, S_OUT, S_FIN, S_ERR} st_t;
  st_t st;
  logic [2:0]  cstep;                          // scalar step
  logic        cfull;                          // scalar sequence: full (r) or mean only (μ)
  logic [31:0] w, rr;                          // word within the pass, row being computed
  logic [31:0] ssum, mu, rinv, sc_t;
  logic        rd_go;
  logic        rd_idle, wr_idle;
  logic [1:0]  slot_full;
  logic        rel_v;

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

  // ---- pipeline: issue (s0) -> buffer read (s1) -> lane math (s2) -> tree / writer
  localparam logic [1:0] T_SUMX = 2'd0, T_SQ = 2'd1, T_OUT = 2'd2;
  logic            is_v;                       // issue this cycle
  logic [1:0]      is_tag;
  logic            s1_v, s1_first, s1_last;  logic [1:0] s1_tag;  logic [LB:0] s1_n;
  logic            s2_v, s2_first, s2_last;  logic [1:0] s2_tag;  logic [LB:0] s2_n;
  logic [L*32-1:0] s2_red;
  logic [L*16-1:0] s2_out;
  logic [L*32-1:0] x_rd, g_rd, b_rd, red_c;
  logic [L*16-1:0] out_c;
  logic [LB:0]     is_n;
  logic [31:0]     left;
  assign left = cols - (w << LB);
  assign is_n = (left >= 32'(L)) ? (LB+1)'(L) : (LB+1)'(left);

  // ---- row buffers (bank b, fp32): x in two slots, gamma, beta
  logic [SFU_LANES-1:0]    w_en;
  logic [SFU_LANES*WB-1:0] w_addr;
  logic [SFU_LANES*32-1:0] w_data;
  logic [1:0]              w_dst;
  logic                    w_slot;
  for (genvar b = 0; b < L; b++) begin : g_bank
    logic [31:0] xm [2*WD];
    logic [31:0] gm [WD];
    logic [31:0] bm [WD];
    always_ff @(posedge clk) begin
      if (w_en[b] && w_dst == 2'd2) xm[{w_slot, w_addr[b*WB +: WB]}] <= w_data[b*32 +: 32];
      if (w_en[b] && w_dst == 2'd0) gm[w_addr[b*WB +: WB]] <= w_data[b*32 +: 32];
      if (w_en[b] && w_dst == 2'd1) bm[w_addr[b*WB +: WB]] <= w_data[b*32 +: 32];
      x_rd[b*32 +: 32] <= xm[{rr[0], w[WB-1:0]}];
      g_rd[b*32 +: 32] <= gm[w[WB-1:0]];
      b_rd[b*32 +: 32] <= bm[w[WB-1:0]];
    end
  end

  logic [63:0] unused_row_max;                 // the reader's softmax row maximum: not used by the norms
  logic [1:0]  unused_row_nan;
  sfu_row_reader #(.ROWCAP(ROWCAP)) u_rd (
    .clk, .rst_n, .go(rd_go), .src_addr(src), .gam_addr(gam), .bet_addr(bet),
    .use_gam(1'b1), .use_bet(ln), .in_fp32(1'b0), .rows, .cols,
    .rd_req_valid, .rd_req_ready, .rd_req_addr, .rd_req_bytes, .rd_rsp_valid, .rd_rsp_ready, .rd_rsp_data,
    .rd_rsp_last, .w_en, .w_addr, .w_data, .w_dst, .w_slot, .slot_full,
    .release_v(rel_v), .release_slot(rr[0]), .causal(1'b0), .pos0(32'd0), .mq(32'd1),
    .row_max(unused_row_max), .row_nan(unused_row_nan), .idle(rd_idle));

  logic [$clog2(FD):0] wcount;
  sfu_row_writer #(.FD(FD)) u_wr (
    .clk, .rst_n, .go(rd_go), .dst_addr(dst), .total(64'(rows) * 64'(cols)),
    .push(s2_v && s2_tag == T_OUT), .push_n(s2_n), .push_data(s2_out), .count(wcount),
    .wr_valid, .wr_ready, .wr_addr, .wr_data, .wr_strb, .idle(wr_idle));

  // ---- lane math (stage s1 -> s2)
  for (genvar i = 0; i < L; i++) begin : g_lane
    logic [31:0] x, a0, m1, m2, y, mul_b;
    logic [15:0] y16;
    assign x = x_rd[32*i +: 32];
    fp32_add u_sub (.a(x), .b({~mu[31], mu[30:0]}), .y(a0));          // x ⊖ μ (layernorm)
    logic [31:0] xa;
    assign xa    = ln ? a0 : x;
    assign mul_b = (s1_tag == T_OUT) ? rinv : xa;
    fp32_mul u_m1 (.a(xa), .b(mul_b), .y(m1));                        // x⊗x, d⊗d, x⊗r, d⊗r
    fp32_mul u_m2 (.a(m1), .b(g_rd[32*i +: 32]), .y(m2));             // ⊗ γ
    fp32_add u_ab (.a(m2), .b(b_rd[32*i +: 32]), .y(y));              // ⊕ β (layernorm)
    fp32_to_fp16 u_h (.a(ln ? y : m2), .y(y16));
    assign red_c[32*i +: 32] = (i < 32'(s1_n)) ? ((s1_tag == T_SUMX) ? x : m1) : 32'd0;
    assign out_c[16*i +: 16] = y16;
  end

  logic        t_ov;
  logic [31:0] t_sum;
  tree_sum_seq #(.L(L), .T(TREE_LANES)) u_tree (
    .clk, .rst_n, .in_valid(s2_v && s2_tag != T_OUT), .in_first(s2_first), .in_last(s2_last),
    .in_lanes(s2_red), .out_valid(t_ov), .out_sum(t_sum));

  // ---- scalar chain: ms = S ⊘ c; t = ms ⊕ eps; q = sqrt(t); r = 1 ⊘ q
  logic [31:0] dv_a, dv_b, dv_y, ad_y, sq_y;
  assign dv_a = (cstep == 3'd0) ? ssum : 32'h3F800000;
  assign dv_b = (cstep == 3'd0) ? cf : sc_t;
  fp32_div  u_div (.a(dv_a), .b(dv_b), .y(dv_y));
  fp32_add  u_add (.a(sc_t), .b(eps), .y(ad_y));
  fp32_sqrt u_sqt (.a(sc_t), .y(sq_y));

  // ---- control
  logic can_out;
  assign can_out = (32'(wcount) + 32'd3 <= 32'(FD));
  always_comb begin
    is_v = 1'b0; is_tag = T_OUT; rel_v = 1'b0;
    unique case (st)
      S_P1:  begin is_v = 1'b1; is_tag = ln ? T_SUMX : T_SQ; end
      S_P2:  begin is_v = 1'b1; is_tag = T_SQ; end
      S_OUT: begin is_v = can_out; is_tag = T_OUT; rel_v = can_out && (w == nw - 1); end
      default: ;
    endcase
  end

  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      st <= S_IDLE; busy <= 1'b0; done <= 1'b0; err <= 1'b0; err_code <= '0; rd_go <= 1'b0;
      ln <= 1'b0; src <= '0; dst <= '0; gam <= '0; bet <= '0; rows <= '0; cols <= '0; eps <= '0;
      nw <= '0; cf <= '0; cstep <= '0; cfull <= 1'b0; w <= '0; rr <= '0; ssum <= '0; mu <= '0;
      rinv <= '0; sc_t <= '0;
      s1_v <= 1'b0; s1_first <= 1'b0; s1_last <= 1'b0; s1_tag <= '0; s1_n <= '0;
      s2_v <= 1'b0; s2_first <= 1'b0; s2_last <= 1'b0; s2_tag <= '0; s2_n <= '0; s2_red <= '0; s2_out <= '0;
    end else begin
      done <= 1'b0; err <= 1'b0; rd_go <= 1'b0;
      // pipeline
      s1_v <= is_v; s1_tag <= is_tag; s1_first <= (w == 0); s1_last <= (w == nw - 1); s1_n <= is_n;
      s2_v <= s1_v; s2_tag <= s1_tag; s2_first <= s1_first; s2_last <= s1_last; s2_n <= s1_n;
      s2_red <= red_c; s2_out <= out_c;
      if (is_v) w <= (w == nw - 1) ? 32'd0 : w + 32'd1;
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
          w    <= '0; rr <= '0;
          if (e_zero || e_long) begin
            st <= S_ERR; err_code <= e_zero ? 8'd1 : 8'd2;
          end else begin
            st <= S_WAIT; err_code <= 8'd0; rd_go <= 1'b1;
          end
        end
        S_ERR: begin st <= S_IDLE; busy <= 1'b0; done <= 1'b1; err <= 1'b1; end
        S_WAIT: if (slot_full[rr[0]] && !rd_go) st <= S_P1;
        S_P1: if (w == nw - 1) st <= S_R1;
        S_R1: if (t_ov) begin ssum <= t_sum; cstep <= 3'd0; cfull <= !ln; st <= S_C; end
        S_R2: if (t_ov) begin ssum <= t_sum; cstep <= 3'd0; cfull <= 1'b1; st <= S_C; end
        S_C: begin
          cstep <= cstep + 3'd1;
          unique case (cstep)
            3'd0: begin
              sc_t <= dv_y;
              if (!cfull) begin mu <= dv_y; st <= S_P2; end
            end
            3'd1: sc_t <= ad_y;
            3'd2: sc_t <= sq_y;
            default: begin rinv <= dv_y; st <= S_OUT; end
          endcase
        end
        S_P2: if (w == nw - 1) st <= S_R2;
        S_OUT: if (can_out && w == nw - 1) begin
          rr <= rr + 32'd1;
          st <= (rr == rows - 1) ? S_FIN : S_WAIT;
        end
        S_FIN: if (rd_idle && wr_idle && !s1_v && !s2_v) begin st <= S_IDLE; busy <= 1'b0; done <= 1'b1; end
        default: st <= S_IDLE;
      endcase
    end
  end
endmodule
