// fp32_add: y = fp32(a + b), the ⊕ of doc/isa.md sections 1 and 7 (RNE, subnormals in and out, overflow to
// +-inf). IEEE specials: a NaN operand or inf + (-inf) gives NaN (the quiet NaN 0x7FC00000); inf + finite =
// inf; an exact zero sum is +0 (x + (-x) = +0), except -0 + -0 = -0. For a - b flip b[31].
// Combinational, no clock (latency 0).
module fp32_add (
  input  logic [31:0] a,
  input  logic [31:0] b,
  output logic [31:0] y
);
  // Order the operands by magnitude: x = the larger, z = the smaller.
  logic        swap;
  logic [31:0] x, z;
  assign swap = (b[30:0] > a[30:0]);
  assign x    = swap ? b : a;
  assign z    = swap ? a : b;

  logic [7:0]  ex, ez;        // effective exponents (1 for subnormals)
  logic [23:0] mx, mz;        // significands with the hidden bit
  assign ex = (x[30:23] == 8'd0) ? 8'd1 : x[30:23];
  assign ez = (z[30:23] == 8'd0) ? 8'd1 : z[30:23];
  assign mx = {x[30:23] != 8'd0, x[22:0]};
  assign mz = {z[30:23] != 8'd0, z[22:0]};

  // Align z to x with 26 extra low bits; bits shifted past them are jammed into a sticky LSB. With d <= 1
  // nothing is lost and the sum is exact; with d >= 2 the result loses at most one leading bit, so the
  // rounding position stays far above the sticky LSB and the jammed sum rounds like the exact one.
  localparam int W = 51;      // carry + 24 significand bits + 26 extra bits
  logic [7:0]   d;
  logic [W-1:0] ax, az, az_sh, r;
  logic         lost, sub;
  assign d     = ex - ez;
  assign ax    = {1'b0, mx, 26'd0};
  assign az    = {1'b0, mz, 26'd0};
  assign az_sh = (d >= 8'(W)) ? '0 : (az >> d);
  assign lost  = (d >= 8'(W)) ? (|az) : (|(az & ~({W{1'b1}} << d)));
  assign sub   = x[31] ^ z[31];
  assign r     = sub ? (ax - (az_sh | W'(lost))) : (ax + (az_sh | W'(lost)));

  // r * 2^(ex - 127 - 49) is the sum (up to the jam); fp32_round's convention has bit W-1 at exponent
  // `exp`, so exp = ex + 1.
  logic [31:0] rounded;
  fp32_round #(.W(W), .EW(10)) u_round (
    .sign(x[31]), .exp(10'(ex) + 10'sd1), .sig(r), .sticky(1'b0), .y(rounded)
  );

  logic a_nan, b_nan, a_inf, b_inf;
  assign a_nan = (a[30:23] == 8'hFF) && (a[22:0] != 23'd0);
  assign b_nan = (b[30:23] == 8'hFF) && (b[22:0] != 23'd0);
  assign a_inf = (a[30:0] == 31'h7F800000);
  assign b_inf = (b[30:0] == 31'h7F800000);

  always_comb begin
    if (a_nan || b_nan || (a_inf && b_inf && (a[31] != b[31]))) y = 32'h7FC00000;
    else if (a_inf)          y = a;
    else if (b_inf)          y = b;
    else if (r == '0)        y = {a[31] & b[31], 31'd0};     // exact zero: -0 only for -0 + -0
    else                     y = rounded;
  end
endmodule
