// fp32_lt: lt = (a < b) as IEEE compareQuietLess (doc/isa.md sections 1, 7.3 relu, 7.6 `t < 0`): false when
// either operand is NaN, -0 < +0 is false, -inf < everything else non-NaN.
// Combinational, no clock (latency 0).
module fp32_lt (
  input  logic [31:0] a,
  input  logic [31:0] b,
  output logic        lt
);
  logic a_nan, b_nan, both_zero;
  assign a_nan     = (a[30:23] == 8'hFF) && (a[22:0] != 23'd0);
  assign b_nan     = (b[30:23] == 8'hFF) && (b[22:0] != 23'd0);
  assign both_zero = (a[30:0] == 31'd0) && (b[30:0] == 31'd0);

  // Sign-magnitude order: the magnitude bits compare as unsigned integers.
  always_comb begin
    if (a_nan || b_nan || both_zero) lt = 1'b0;
    else if (a[31] != b[31])         lt = a[31];                 // negative < positive
    else if (!a[31])                 lt = (a[30:0] < b[30:0]);   // both positive
    else                             lt = (a[30:0] > b[30:0]);   // both negative
  end
endmodule
