// pwl_index: the entry selection of doc/isa.md section 7.6 (hw_models.numerics.pwl_eval):
//   t = (x ⊖ lo) ⊗ inv_step;  entry = 0 if t < 0; nseg + 1 if t >= nseg or t is NaN; else 1 + floor(t).
// As in the simulator (numpy compares the fp32 t with the Python int nseg converted to fp32), "t >= nseg"
// compares against fp32(nseg) (RNE; exact for nseg <= 2^24). t = -0 is not < 0 and gives entry 1.
// entry is computed modulo 2^32 (nseg + 1 wraps for nseg = 2^32 - 1).
// Combinational, no clock (latency 0).
module pwl_index (
  input  logic [31:0] x,
  input  logic [31:0] lo,
  input  logic [31:0] inv_step,
  input  logic [31:0] nseg,
  output logic [31:0] entry
);
  logic [31:0] diff, t, nseg_f;
  fp32_add u_sub (.a(x), .b({~lo[31], lo[30:0]}), .y(diff));     // x ⊖ lo
  fp32_mul u_mul (.a(diff), .b(inv_step), .y(t));
  fx_to_fp32 #(.W(33)) u_nseg (.v($signed({1'b0, nseg})), .frac_bits(8'd0), .y(nseg_f));

  logic t_nan, t_neg, t_lt_nseg;
  assign t_nan = (t[30:23] == 8'hFF) && (t[22:0] != 23'd0);
  fp32_lt u_neg (.a(t), .b(32'd0), .lt(t_neg));
  fp32_lt u_top (.a(t), .b(nseg_f), .lt(t_lt_nseg));

  // floor(t) for 0 <= t < fp32(nseg) <= 2^32: the integer part of 1.m * 2^(e-127).
  // (t < 2^32 here, so e - 127 <= 31.)
  logic [31:0] fl;
  assign fl = (t[30:23] < 8'd127) ? 32'd0
            : 32'((55'({1'b1, t[22:0]}) << 5'(t[30:23] - 8'd127)) >> 23);

  always_comb begin
    if (t_nan || !(t_neg || t_lt_nseg)) entry = nseg + 32'd1;      // NaN, or t >= nseg
    else if (t_neg)                     entry = 32'd0;
    else                                entry = fl + 32'd1;
  end
endmodule
