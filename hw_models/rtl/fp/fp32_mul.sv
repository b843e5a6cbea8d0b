// fp32_mul: y = fp32(a * b), the ⊗ of doc/isa.md sections 1 and 7 (RNE, subnormals in and out, overflow to
// +-inf, underflow to +-0). Sign = a[31] ^ b[31] for every non-NaN result (zeros and infinities included).
// NaN operand or 0 * inf gives NaN (0x7FC00000).
// Combinational, no clock (latency 0).
module fp32_mul (
  input  logic [31:0] a,
  input  logic [31:0] b,
  output logic [31:0] y
);
  logic [7:0]  ea, eb;        // effective exponents (1 for subnormals)
  logic [23:0] ma, mb;        // significands with the hidden bit
  assign ea = (a[30:23] == 8'd0) ? 8'd1 : a[30:23];
  assign eb = (b[30:23] == 8'd0) ? 8'd1 : b[30:23];
  assign ma = {a[30:23] != 8'd0, a[22:0]};
  assign mb = {b[30:23] != 8'd0, b[22:0]};

  // The exact product p * 2^(ea + eb - 254 - 46); fp32_round's convention (bit 47 at exponent `exp`)
  // gives exp = ea + eb - 126. Subnormal operands just leave leading zeros in p.
  logic [47:0] p;
  logic        s;
  assign p = ma * mb;
  assign s = a[31] ^ b[31];

  logic [31:0] rounded;
  fp32_round #(.W(48), .EW(11)) u_round (
    .sign(s), .exp(11'(ea) + 11'(eb) - 11'sd126), .sig(p), .sticky(1'b0), .y(rounded)
  );

  logic a_nan, b_nan, a_inf, b_inf, a_zero, b_zero;
  assign a_nan  = (a[30:23] == 8'hFF) && (a[22:0] != 23'd0);
  assign b_nan  = (b[30:23] == 8'hFF) && (b[22:0] != 23'd0);
  assign a_inf  = (a[30:0] == 31'h7F800000);
  assign b_inf  = (b[30:0] == 31'h7F800000);
  assign a_zero = (a[30:0] == 31'd0);
  assign b_zero = (b[30:0] == 31'd0);

  always_comb begin
    if (a_nan || b_nan || (a_inf && b_zero) || (b_inf && a_zero)) y = 32'h7FC00000;
    else if (a_inf || b_inf)   y = {s, 31'h7F800000};
    else if (a_zero || b_zero) y = {s, 31'd0};
    else                       y = rounded;
  end
endmodule
