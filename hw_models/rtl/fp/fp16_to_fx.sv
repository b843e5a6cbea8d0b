// fp16_to_fx: v = a * 2^24 exactly, as a signed 42-bit integer (doc/isa.md section 7.2: every finite fp16 is
// an integer multiple of 2^-24 below 2^16, so this is exact and |v| < 2^40). special = a is inf or NaN
// (v is then 0). Both zeros give v = 0.
// Combinational, no clock (latency 0).
module fp16_to_fx (
  input  logic [15:0]        a,
  output logic signed [41:0] v,
  output logic               special
);
  logic [4:0]  e;
  logic [40:0] mag;
  assign e       = a[14:10];
  assign special = (e == 5'd31);
  // Normal: 1.m * 2^(e-15) * 2^24 = {1, m} << (e - 1). Subnormal: m * 2^-24 * 2^24 = m.
  assign mag     = (e == 5'd0) ? 41'(a[9:0]) : (41'({1'b1, a[9:0]}) << (e - 5'd1));

  always_comb begin
    if (special)    v = '0;
    else if (a[15]) v = -$signed({1'b0, mag});
    else            v = $signed({1'b0, mag});
  end
endmodule
