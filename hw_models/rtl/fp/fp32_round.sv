// fp32_round: the common normalise-and-round step of the fp32 blocks (doc/isa.md section 1: RNE,
// subnormal results, overflow to infinity). Not one of the named building blocks; fp32_add, fp32_mul,
// fp32_div, fp32_sqrt and fx_to_fp32 use it.
//
// Input value = (-1)^sign * (sig + frac) * 2^(exp - 127 - (W-1)) where frac in [0, 1) is non-zero exactly
// when `sticky` is set (the bits below sig that the caller dropped). So when sig[W-1] = 1, `exp` is the
// biased fp32 exponent of the value. sig may have leading zeros (they are normalised away) and exp may
// be <= 0 (subnormal or underflow to zero) or >= 255 (overflow to infinity). W >= 26.
// y = fp32_RNE(value); a zero sig with sticky clear gives a zero of the given sign.
// Combinational, no clock (latency 0).
module fp32_round #(
  parameter int W  = 48,
  parameter int EW = 12            // width of the signed exponent
) (
  input  logic                 sign,
  input  logic signed [EW-1:0] exp,
  input  logic [W-1:0]         sig,
  input  logic                 sticky,
  output logic [31:0]          y
);
  localparam int LZW = $clog2(W + 1);

  // Leading-zero count of sig (W when sig = 0).
  logic [LZW-1:0] lz;
  always_comb begin
    lz = LZW'(W);
    for (int i = 0; i < W; i++) if (sig[i]) lz = LZW'(W - 1 - i);
  end

  // Normalised exponent if the leading one were moved to bit W-1.
  logic signed [EW:0] en;
  assign en = (EW+1)'(exp) - (EW+1)'($signed({1'b0, lz}));

  // Shift: left by lz when the result is normal (en >= 1); when it is subnormal (en < 1), shift so that the
  // exponent becomes 1: left by exp-1 if exp >= 1 (exp-1 < lz, so no bit is lost), else right by 1-exp,
  // collecting the bits shifted out as a sticky bit (a shift >= W leaves only sticky).
  localparam int SW = LZW + 1;                       // shift-amount width (holds 0..2W-1)
  logic          normal;
  logic [SW-1:0] ls, rs;                             // left / right shift amounts
  logic [W-1:0]  t;                                  // shifted significand, bit W-1 = hidden bit
  logic          st;                                 // sticky of the bits shifted out to the right
  always_comb begin
    normal = (en >= (EW+1)'(1));
    ls = '0;
    rs = '0;
    if (normal)                 ls = SW'(lz);
    else if (exp >= EW'(1))     ls = SW'(exp - EW'(1));
    else if (exp < -EW'(W))     rs = SW'(W + 1);
    else                        rs = SW'(EW'(1) - exp);
    t  = (sig << ls) >> rs;
    st = |(sig & ~({W{1'b1}} << rs));
  end

  logic [22:0] frac;
  logic        lsb, rnd, stk, inc;
  assign frac = t[W-2 -: 23];
  assign lsb  = t[W-24];
  assign rnd  = t[W-25];
  assign stk  = (|t[W-26:0]) | st | sticky;
  assign inc  = rnd & (stk | lsb);

  // Pack {exponent, fraction} and add the rounding increment: a carry out of the fraction bumps the
  // exponent (subnormal -> min normal, next binade, max finite -> infinity), as IEEE requires.
  logic [30:0] packed_mag, rounded;
  assign packed_mag = {normal ? en[7:0] : 8'd0, frac};
  assign rounded    = packed_mag + 31'(inc);

  always_comb begin
    if (normal && en >= 255) y = {sign, 8'hFF, 23'd0};      // overflow before rounding
    else                     y = {sign, rounded};
  end
endmodule
