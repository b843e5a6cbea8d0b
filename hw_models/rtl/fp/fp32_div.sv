// fp32_div: y = fp32(a / b), the correctly rounded IEEE division ⊘ of doc/isa.md section 7.5 (RNE,
// subnormals in and out, overflow to +-inf, underflow to +-0). Specials: NaN operand, 0/0 or inf/inf give
// NaN (0x7FC00000); x/0 = +-inf and inf/x = +-inf for x not NaN/0-over-0; x/inf = +-0, 0/x = +-0; the sign
// of every non-NaN result is a[31] ^ b[31].
// Method: normalise both significands to [2^23, 2^24), then 27 steps of restoring division (an unrolled
// digit recurrence, one quotient bit per step) give Q = floor(2^26 * ma / mb) in (2^25, 2^27); the final
// remainder is the sticky bit, so fp32_round rounds the exact quotient correctly.
// Combinational, no clock (latency 0).
module fp32_div (
  input  logic [31:0] a,
  input  logic [31:0] b,
  output logic [31:0] y
);
  // Normalised significands and exponents (a subnormal's leading zeros move into its exponent).
  logic [23:0] ma, mb, na, nb;
  logic [4:0]  lza, lzb;
  assign ma = {a[30:23] != 8'd0, a[22:0]};
  assign mb = {b[30:23] != 8'd0, b[22:0]};
  always_comb begin
    lza = 5'd0;
    lzb = 5'd0;
    for (int i = 0; i < 24; i++) begin
      if (ma[i]) lza = 5'(23 - i);
      if (mb[i]) lzb = 5'(23 - i);
    end
  end
  assign na = ma << lza;
  assign nb = mb << lzb;

  // Restoring division: rem < nb always; each step compares, subtracts, and shifts in a zero.
  logic [26:0] q;
  logic [24:0] rem;
  always_comb begin
    rem = {1'b0, na};
    for (int i = 26; i >= 0; i--) begin
      if (rem >= {1'b0, nb}) begin
        q[i] = 1'b1;
        rem  = rem - {1'b0, nb};
      end else begin
        q[i] = 1'b0;
      end
      rem = {rem[23:0], 1'b0};
    end
  end

  // a / b = Q * 2^-26 * 2^(ea' - eb'), ea' = max(ea, 1) - lza; fp32_round's convention (bit 26 at exponent
  // `exp`) gives exp = ea' - eb' + 127.
  logic [7:0]         ea, eb;
  logic signed [10:0] ex;
  logic               s;
  assign ea = (a[30:23] == 8'd0) ? 8'd1 : a[30:23];
  assign eb = (b[30:23] == 8'd0) ? 8'd1 : b[30:23];
  assign ex = 11'(ea) - 11'(lza) - 11'(eb) + 11'(lzb) + 11'sd127;
  assign s  = a[31] ^ b[31];

  logic [31:0] rounded;
  fp32_round #(.W(27), .EW(11)) u_round (
    .sign(s), .exp(ex), .sig(q), .sticky(rem != 25'd0), .y(rounded)
  );

  logic a_nan, b_nan, a_inf, b_inf, a_zero, b_zero;
  assign a_nan  = (a[30:23] == 8'hFF) && (a[22:0] != 23'd0);
  assign b_nan  = (b[30:23] == 8'hFF) && (b[22:0] != 23'd0);
  assign a_inf  = (a[30:0] == 31'h7F800000);
  assign b_inf  = (b[30:0] == 31'h7F800000);
  assign a_zero = (a[30:0] == 31'd0);
  assign b_zero = (b[30:0] == 31'd0);

  always_comb begin
    if (a_nan || b_nan || (a_zero && b_zero) || (a_inf && b_inf)) y = 32'h7FC00000;
    else if (a_inf || b_zero) y = {s, 31'h7F800000};
    else if (a_zero || b_inf) y = {s, 31'd0};
    else                      y = rounded;
  end
endmodule
