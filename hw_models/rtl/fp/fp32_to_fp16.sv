// fp32_to_fp16: binary32 -> binary16 rounding, RNE (doc/isa.md section 1; the fp16(...) of sections 7.3-7.5).
// Subnormal fp16 results are produced (no flush to zero), values that round past 65504 become +-inf, +-0 and
// +-inf keep their sign, and a NaN gives the quiet NaN 0x7E00 with the input's sign.
// Combinational, no clock (latency 0).
module fp32_to_fp16 (
  input  logic [31:0] a,
  output logic [15:0] y
);
  logic        s;
  logic [7:0]  e;
  logic [22:0] m;
  assign {s, e, m} = a;

  // A normal input is 1.m * 2^(e-127). fp16 keeps 11 significant bits when e-127 >= -14 (normal result,
  // shift the 24-bit significand right by 13) and fewer when it is smaller (subnormal result: shift by
  // 13 + (-14 - (e-127)) = 126 - e, at most 24 for e = 102). Below that (e < 102, including fp32 zeros
  // and subnormals) |a| < 2^-25, half the smallest fp16 subnormal, which rounds to +-0.
  logic [23:0] sig;
  logic [4:0]  sh;            // right shift, 13..24
  logic        norm16;        // the result is an fp16 normal (before rounding)
  assign sig    = {1'b1, m};
  assign norm16 = (e >= 8'd113);
  assign sh     = norm16 ? 5'd13 : 5'(8'd126 - e);

  logic [9:0]  q;             // kept fraction bits (the hidden bit is implied by the exponent)
  logic        rnd, stk, inc;
  assign q   = 10'(sig >> sh);
  assign rnd = sig[sh - 5'd1];
  assign stk = |(sig & ~(24'hFFFFFF << (sh - 5'd1)));
  assign inc = rnd & (stk | q[0]);

  // {exponent, fraction} + increment: a carry out of the fraction bumps the exponent (subnormal -> normal,
  // 65504 + carry -> exponent 31, fraction 0 = infinity).
  logic [14:0] packed_mag;
  assign packed_mag = {norm16 ? 5'(e - 8'd112) : 5'd0, q} + 15'(inc);

  always_comb begin
    if (e == 8'hFF && m != 23'd0) y = {s, 15'h7E00};           // NaN -> quiet NaN
    else if (e >= 8'd143)          y = {s, 15'h7C00};           // inf, or |a| >= 2^16: overflow
    else if (e < 8'd102)           y = {s, 15'd0};              // |a| < 2^-25 (incl. +-0, fp32 subnormals)
    else                           y = {s, packed_mag};
  end
endmodule
