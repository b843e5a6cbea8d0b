// mvm_lane: one output lane (one weight row n) of the MVM unit, private to mvm_engine.sv, which instantiates
// TOUT*MVM_GROUPS of them. Holds the lane's weight row segments (NBUF rotating buffers of WWORDS port words, a
// single-write, single-read RAM) and its accumulator RAM (MB rows of fp32), and computes the lane's part of the
// pipeline: S1 TIN products (fp16: exact fp32 products, TIN-lane fp32_tree; int4/int8: exact fixed-point
// sub-block sums with the inf/NaN flags), S2 accumulation (int4 group sums times the group scale, int8 block sums,
// fp16 tree levels above TIN), E epilogue (int8 scale, affine, residual add/mul, relu) to fp32 and fp16.
// The numerics are those of doc/isa.md 7.2 and 7.3, stated in mvm_engine.sv; the engine drives the shared
// operands (the TIN-element x window and its conversions, the stage valids and token fields).
module mvm_lane import dlavm_pkg::*; #(
  parameter int NBUF = 4,
  parameter int WWORDS = 32,
  parameter int MB = 64,
  parameter int DW = 51,
  parameter int WA = $clog2(NBUF * WWORDS),
  parameter int MBA = $clog2(MB)
) (
  input  logic                    clk,
  input  logic                    is4, is8, is16,
  // weight buffer: written a port word at a time by the realigner, read for the token in S0
  input  logic                    w_we,
  input  logic [WA-1:0]           w_waddr,
  input  logic [PORT_BITS-1:0]    w_wdata,
  input  logic                    s0v,
  input  logic [WA-1:0]           w_raddr,
  // S1: the token's place in the weight word, the x window and its conversions
  input  logic                    s1v,
  input  logic [$clog2(2 * PORT_BYTES / TIN)-1:0] s1_wch,   // the token's TIN/2-byte chunk of the word
  input  logic [TIN*16-1:0]       xwin,
  input  logic [TIN-1:0]          kval, x_nan, x_inf,
  input  logic [TIN*32-1:0]       x32,
  input  logic [TIN*42-1:0]       xfx,
  input  logic [MBA-1:0]          acc_raddr,     // accumulator RAM row read in S1
  input  logic                    acc_byp,       // S2 writes that row in this cycle: take S2's value
  // S2
  input  logic                    s2v,
  input  logic                    t_first, t_firstseg, t_last, t_lastseg, t_lastp,
  input  logic [MBA-1:0]          acc_waddr,
  input  logic [31:0]             jj,            // TIN chunk index within the TREE_LANES tree
  input  logic                    b4_start, b4_end, b8_start, b8_end,
  input  logic [15:0]             s4h,           // the int4 group scale of this lane's row (fp16)
  // E
  input  logic [15:0]             e_s8, e_a, e_b, e_r,
  input  logic                    f_aff, f_relu,
  input  logic [1:0]              f_res,
  output logic [31:0]             yv,
  output logic [15:0]             yh
);
  localparam int TL = TREE_LANES;
  localparam int B = INT8_BLOCK;
  localparam int SB8 = (TIN < B) ? TIN : B;            // int8 sub-block per cycle
  localparam int NSB8 = TIN / SB8;
  localparam int NV = NSB8;                            // values accumulated per cycle (max)
  localparam int R16 = $clog2(TL / TIN);               // tree levels above the TIN-lane tree

  // x (+) +0: -0 becomes +0, everything else unchanged (NaN stays NaN)
  function automatic logic [31:0] zfix(input logic [31:0] a);
    return (a == 32'h8000_0000) ? 32'd0 : a;
  endfunction
  function automatic logic [31:0] spec(input logic [2:0] fl);
    if (fl[2] || (fl[1] && fl[0])) return 32'h7FC0_0000;
    if (fl[1]) return 32'h7F80_0000;
    return 32'hFF80_0000;
  endfunction

  // ------------------------------------------------------------------ weight buffer (read in S0)
  logic [PORT_BITS-1:0] wq_r;
  mat_ram #(.W(PORT_BITS), .DEPTH(NBUF * WWORDS), .AW(WA)) u_wbuf (
    .clk(clk), .we(w_we), .waddr(w_waddr), .wdata(w_wdata), .re(s0v), .raddr(w_raddr), .rdata(wq_r));

  // ------------------------------------------------------------------ S1: products, tree, exact sums
  /* verilator lint_off UNUSEDSIGNAL */  // a token uses its first TIN*16 bits at most (fp16)
  logic [PORT_BITS-1:0] wsh;
  /* verilator lint_on UNUSEDSIGNAL */
  assign wsh = wq_r >> (int'(s1_wch) * TIN * 4);
  logic [TIN*32-1:0] prods;
  for (genvar i = 0; i < TIN; i++) begin : g_p
    logic [31:0] w32, p;
    fp16_to_fp32 u_w (.a(wsh[16*i +: 16]), .y(w32));
    fp32_mul u_m (.a(x32[32*i +: 32]), .b(w32), .y(p));
    assign prods[32*i +: 32] = kval[i] ? p : 32'd0;
  end
  logic [31:0] s16_d, s16_q;
  fp32_tree #(.N(TIN)) u_tree (.x(prods), .y(s16_d));

  logic signed [DW-1:0] isum_d [NSB8];
  logic [2:0]           ifl_d [NSB8];     // {nan, +inf, -inf}
  logic signed [DW-1:0] isum_q [NSB8];
  logic [2:0]           ifl_q [NSB8];
  for (genvar j = 0; j < NSB8; j++) begin : g_sb
    always_comb begin
      logic signed [DW-1:0] acc;
      logic [2:0] fl;
      acc = '0;
      fl = '0;
      for (int i = j * SB8; i < (j + 1) * SB8; i++) begin
        logic signed [7:0] q;
        q = is4 ? 8'($signed(wsh[4*i +: 4])) : $signed(wsh[8*i +: 8]);
        acc = acc + DW'($signed(xfx[42*i +: 42]) * q);
        if (x_nan[i] || (x_inf[i] && q == 0)) fl[2] = 1'b1;
        if (x_inf[i] && q != 0 && (xwin[16*i + 15] == q[7])) fl[1] = 1'b1;
        if (x_inf[i] && q != 0 && (xwin[16*i + 15] != q[7])) fl[0] = 1'b1;
      end
      isum_d[j] = acc;
      ifl_d[j] = fl;
    end
  end

  // accumulator RAM (the lane's state at a segment boundary, per row of the m-block), read in S1
  logic [31:0] acc_out, accram_rd, accram_q;
  logic        byp_q;
  logic [31:0] byp_v;
  mat_ram #(.W(32), .DEPTH(MB), .AW(MBA)) u_accram (
    .clk(clk), .we(s2v && t_last && !t_lastseg), .waddr(acc_waddr), .wdata(acc_out), .re(s1v),
    .raddr(acc_raddr), .rdata(accram_rd));
  always_ff @(posedge clk) begin
    if (s1v) begin
      s16_q <= s16_d;
      for (int j = 0; j < NSB8; j++) begin isum_q[j] <= isum_d[j]; ifl_q[j] <= ifl_d[j]; end
      // bypass: S2 writes the same row's state in this cycle (one-row block, one-chunk segment)
      byp_q <= acc_byp;
      byp_v <= acc_out;
    end
  end
  assign accram_q = byp_q ? byp_v : accram_rd;

  // ------------------------------------------------------------------ S2: accumulate
  logic [31:0] acc;
  logic signed [DW-1:0] dc, dc_n;
  logic [2:0] flc, flc_n;
  logic [31:0] acc_in;
  assign acc_in = t_first ? (t_firstseg ? 32'd0 : accram_q) : acc;
  // fp16: upper tree levels by a stack: level l holds the pending left operand P_l; a chunk sum climbs
  // while the chunk index has a 1 bit at the level (P_l (+) g); at the row's last chunk the missing right
  // parts are +0 subtrees (g (+) +0).
  logic [31:0] gtop;
  logic complete16;
  for (genvar l = 0; l < R16; l++) begin : g_lv
    logic [31:0] gin, gadd, gout, p_q;
    logic store;
    if (l == 0) begin : g_in0
      assign gin = s16_q;
    end else begin : g_inl
      assign gin = g_lv[l - 1].gout;
    end
    fp32_add u_a (.a(p_q), .b(gin), .y(gadd));
    assign gout = jj[l] ? gadd : zfix(gin);
    if (l == 0) begin : g_st0
      assign store = !jj[0] && !t_lastp;
    end else begin : g_stl
      assign store = !jj[l] && !t_lastp && (&jj[l - 1:0]);
    end
    always_ff @(posedge clk) if (s2v && store) p_q <= gin;
  end
  if (R16 == 0) begin : g_top0
    assign gtop = s16_q;
  end else begin : g_topl
    assign gtop = g_lv[R16 - 1].gout;
  end
  assign complete16 = (jj == (TL / TIN) - 1) || t_lastp;

  // int4
  logic signed [DW-1:0] d4;
  logic [2:0] fl4;
  logic [31:0] v4, v4f, s4v, v4s;
  always_comb begin
    d4 = b4_start ? '0 : dc;
    fl4 = b4_start ? 3'd0 : flc;
    for (int j = 0; j < NSB8; j++) begin d4 = d4 + isum_q[j]; fl4 = fl4 | ifl_q[j]; end
  end
  fx_to_fp32 #(.W(DW)) u_f4 (.v(d4), .frac_bits(8'd24), .y(v4f));
  assign v4 = (fl4 != 0) ? spec(fl4) : v4f;
  fp16_to_fp32 u_s4 (.a(s4h), .y(s4v));
  fp32_mul u_m4 (.a(v4), .b(s4v), .y(v4s));

  // int8
  logic signed [DW-1:0] d8 [NSB8];
  logic [2:0] fl8 [NSB8];
  logic [31:0] v8 [NSB8];
  for (genvar j = 0; j < NSB8; j++) begin : g_8
    logic [31:0] v8f;
    assign d8[j] = ((j == 0 && !b8_start) ? dc : DW'(0)) + isum_q[j];
    assign fl8[j] = ((j == 0 && !b8_start) ? flc : 3'd0) | ifl_q[j];
    fx_to_fp32 #(.W(DW)) u_f8 (.v(d8[j]), .frac_bits(8'd24), .y(v8f));
    assign v8[j] = (fl8[j] != 0) ? spec(fl8[j]) : v8f;
  end
  assign dc_n = is4 ? d4 : d8[0];
  assign flc_n = is4 ? fl4 : fl8[0];

  // the values added to the accumulator this cycle, in order
  logic [31:0] vv [NV];
  logic [NV-1:0] vok;
  always_comb begin
    for (int j = 0; j < NV; j++) begin
      vv[j] = v8[j];
      vok[j] = is8 && b8_end;
    end
    if (is16) begin vv[0] = gtop; vok[0] = complete16; end
    if (is4) begin vv[0] = v4s; vok[0] = b4_end; end
  end
  logic [31:0] ac [NV + 1];
  assign ac[0] = acc_in;
  for (genvar j = 0; j < NV; j++) begin : g_acc
    logic [31:0] sum;
    fp32_add u_add (.a(ac[j]), .b(vv[j]), .y(sum));
    assign ac[j + 1] = vok[j] ? sum : ac[j];
  end
  assign acc_out = ac[NV];

  logic [31:0] acc_fin;
  always_ff @(posedge clk) begin
    if (s2v) begin
      acc <= acc_out;
      dc <= dc_n;
      flc <= flc_n;
      if (t_last && t_lastseg) acc_fin <= acc_out;
    end
  end

  // ------------------------------------------------------------------ E: epilogue
  logic [31:0] s8v, av, bv, rv, y1m, y1, y2m, y2a, y2, y3a, y3m, y3;
  fp16_to_fp32 u_s8 (.a(e_s8), .y(s8v));
  fp16_to_fp32 u_av (.a(e_a), .y(av));
  fp16_to_fp32 u_bv (.a(e_b), .y(bv));
  fp16_to_fp32 u_rv (.a(e_r), .y(rv));
  fp32_mul u_m8 (.a(acc_fin), .b(s8v), .y(y1m));
  assign y1 = is8 ? y1m : acc_fin;
  fp32_mul u_ma (.a(y1), .b(av), .y(y2m));
  fp32_add u_aa (.a(y2m), .b(bv), .y(y2a));
  assign y2 = f_aff ? y2a : y1;
  fp32_add u_ra (.a(y2), .b(rv), .y(y3a));
  fp32_mul u_rm (.a(y2), .b(rv), .y(y3m));
  assign y3 = (f_res == 2'(MVM_RES_ADD)) ? y3a : ((f_res == 2'(MVM_RES_MUL)) ? y3m : y2);
  // relu: a negative nonzero non-NaN value becomes +0
  assign yv = (f_relu && y3[31] && !(y3[30:23] == 8'hFF && y3[22:0] != 0) && y3[30:0] != 0) ? 32'd0 : y3;
  fp32_to_fp16 u_h (.a(yv), .y(yh));
endmodule
