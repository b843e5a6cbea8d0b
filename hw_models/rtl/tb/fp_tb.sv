// fp_tb: test top for the fp building blocks (tests/rtl/test_fp.py, bench tests/rtl/benches/cocotb_fp.py).
// The combinational blocks sit side by side on shared operands (a, b, c, h, fxv, fxf, nseg, lanes) so one
// build (Verilator) checks all of them; four tree_sum_seq instances with different (L, T) have their own
// stream inputs. Testbench code: not part of the synthesizable core.
module fp_tb import dlavm_pkg::*; (
  input  logic               clk,
  input  logic               rst_n,
  // shared operands of the combinational blocks
  input  logic [31:0]        a, b, c,
  input  logic [15:0]        h,
  input  logic signed [63:0] fxv,
  input  logic [7:0]         fxf,
  input  logic [31:0]        nseg,
  input  logic [8*32-1:0]    lanes,
  // combinational results
  output logic [31:0]        add_y,       // a ⊕ b
  output logic [31:0]        sub_y,       // a ⊖ b (b with its sign flipped)
  output logic [31:0]        mul_y,       // a ⊗ b
  output logic [31:0]        div_y,       // a ⊘ b
  output logic [31:0]        sqrt_y,      // sqrt(a)
  output logic               lt_y,        // a < b
  output logic [15:0]        f2h_y,       // fp16(a)
  output logic [31:0]        h2f_y,       // fp32(h)
  output logic signed [41:0] h2fx_v,      // h * 2^24
  output logic               h2fx_special,
  output logic [31:0]        fx64_y,      // fp32(fxv * 2^-fxf), W = 64
  output logic [31:0]        fx20_y,      // fp32(fxv[19:0] * 2^-fxf), W = 20 (signed)
  output logic [31:0]        tree8_y,     // 7.1 tree over the 8 lanes
  output logic [31:0]        tree2_y,     // 7.1 tree over lanes 0, 1
  output logic [31:0]        pwl_entry,   // pwl_index(x = a, lo = b, inv_step = c, nseg)
  output logic [31:0]        pwl_y,       // pwl_apply(x = a, slope = b, icpt = c)
  // tree_sum_seq instances: 0: L=8, T=TREE_LANES; 1: L=2, T=8; 2: L=4, T=4; 3: L=1, T=4
  input  logic [3:0]         s_valid, s_first, s_last,
  output logic [3:0]         s_out_valid,
  output logic [4*32-1:0]    s_out_sum
);
  fp32_add     u_add  (.a(a), .b(b), .y(add_y));
  fp32_add     u_sub  (.a(a), .b({~b[31], b[30:0]}), .y(sub_y));
  fp32_mul     u_mul  (.a(a), .b(b), .y(mul_y));
  fp32_div     u_div  (.a(a), .b(b), .y(div_y));
  fp32_sqrt    u_sqrt (.a(a), .y(sqrt_y));
  fp32_lt      u_lt   (.a(a), .b(b), .lt(lt_y));
  fp32_to_fp16 u_f2h  (.a(a), .y(f2h_y));
  fp16_to_fp32 u_h2f  (.a(h), .y(h2f_y));
  fp16_to_fx   u_h2fx (.a(h), .v(h2fx_v), .special(h2fx_special));
  fx_to_fp32 #(.W(64)) u_fx64 (.v(fxv), .frac_bits(fxf), .y(fx64_y));
  fx_to_fp32 #(.W(20)) u_fx20 (.v(fxv[19:0]), .frac_bits(fxf), .y(fx20_y));
  fp32_tree #(.N(8)) u_tree8 (.x(lanes), .y(tree8_y));
  fp32_tree #(.N(2)) u_tree2 (.x(lanes[63:0]), .y(tree2_y));
  pwl_index    u_pwli (.x(a), .lo(b), .inv_step(c), .nseg(nseg), .entry(pwl_entry));
  pwl_apply    u_pwla (.x(a), .slope(b), .icpt(c), .y(pwl_y));

  tree_sum_seq #(.L(8)) u_seq0 (
    .clk, .rst_n, .in_valid(s_valid[0]), .in_first(s_first[0]), .in_last(s_last[0]), .in_lanes(lanes),
    .out_valid(s_out_valid[0]), .out_sum(s_out_sum[0 +: 32]));
  tree_sum_seq #(.L(2), .T(8)) u_seq1 (
    .clk, .rst_n, .in_valid(s_valid[1]), .in_first(s_first[1]), .in_last(s_last[1]), .in_lanes(lanes[63:0]),
    .out_valid(s_out_valid[1]), .out_sum(s_out_sum[32 +: 32]));
  tree_sum_seq #(.L(4), .T(4)) u_seq2 (
    .clk, .rst_n, .in_valid(s_valid[2]), .in_first(s_first[2]), .in_last(s_last[2]), .in_lanes(lanes[127:0]),
    .out_valid(s_out_valid[2]), .out_sum(s_out_sum[64 +: 32]));
  tree_sum_seq #(.L(1), .T(4)) u_seq3 (
    .clk, .rst_n, .in_valid(s_valid[3]), .in_first(s_first[3]), .in_last(s_last[3]), .in_lanes(lanes[31:0]),
    .out_valid(s_out_valid[3]), .out_sum(s_out_sum[96 +: 32]));
endmodule
