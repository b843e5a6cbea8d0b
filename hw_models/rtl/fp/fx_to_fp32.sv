// fx_to_fp32: y = fp32(v * 2^-frac_bits) for a signed W-bit fixed-point value, RNE (doc/isa.md section 1
// rounding; used for fp32(D_g) of section 7.2, where D_g is an exact fixed-point dot product). Subnormal
// results and overflow to +-inf as IEEE; v = 0 gives +0.
// Combinational, no clock (latency 0).
module fx_to_fp32 #(
  parameter int W = 64
) (
  input  logic signed [W-1:0] v,
  input  logic [7:0]          frac_bits,
  output logic [31:0]         y
);
  localparam int SIGW = (W < 26) ? 26 : W;   // fp32_round needs at least 26 bits

  logic         s;
  logic [W-1:0] mag;                         // |v| (fits W bits unsigned, also for v = -2^(W-1))
  assign s   = v[W-1];
  assign mag = s ? W'(-v) : W'(v);

  // sig = mag << (SIGW - W), so sig's bit SIGW-1 has the weight 2^(W-1-frac_bits): in fp32_round's
  // convention exp = 127 + W - 1 - frac_bits.
  logic [31:0] rounded;
  fp32_round #(.W(SIGW), .EW(12)) u_round (
    .sign(s), .exp(12'sd127 + 12'(W - 1) - 12'(frac_bits)), .sig(SIGW'(mag) << (SIGW - W)),
    .sticky(1'b0), .y(rounded)
  );

  assign y = (v == '0) ? 32'd0 : rounded;
endmodule
