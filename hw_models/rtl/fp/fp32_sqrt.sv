// fp32_sqrt: y = fp32(sqrt(a)), the correctly rounded IEEE square root of doc/isa.md section 7.5 (RNE,
// subnormal inputs; the result of a finite positive input is always normal). Specials: sqrt(+-0) = +-0,
// sqrt(+inf) = +inf, NaN or a < 0 (including -inf) give NaN (0x7FC00000).
// Method: normalise the significand, make the exponent even (shifting the significand left once if not),
// then 27 steps of the restoring digit-by-digit square root (one root bit per step) on the 54-bit radicand
// M * 2^28 give r = floor(sqrt(M * 2^28)) in [2^25, 2^27); a non-zero final remainder is the sticky bit, so
// fp32_round rounds the exact root correctly (a root is never exactly half-way: no ties).
// Combinational, no clock (latency 0).
module fp32_sqrt (
  input  logic [31:0] a,
  output logic [31:0] y
);
  logic [23:0] ma, na;
  logic [4:0]  lz;
  logic [7:0]  ea;
  assign ma = {a[30:23] != 8'd0, a[22:0]};
  assign ea = (a[30:23] == 8'd0) ? 8'd1 : a[30:23];
  always_comb begin
    lz = 5'd0;
    for (int i = 0; i < 24; i++) if (ma[i]) lz = 5'(23 - i);
  end
  assign na = ma << lz;

  // a = na * 2^x with x = ea - lz - 150. If x is odd (ea - lz odd) use M = 2 na, x - 1.
  logic signed [9:0] en;      // ea - lz
  logic              odd;
  logic [53:0]       rad;     // M * 2^28
  assign en  = 10'(ea) - 10'(lz);
  assign odd = en[0];
  assign rad = odd ? {1'b0, na, 29'd0} : {2'b0, na, 28'd0};

  // Restoring square root: two radicand bits per step.
  logic [26:0] r;
  logic [29:0] rem, trial;
  always_comb begin
    r   = '0;
    rem = '0;
    for (int i = 26; i >= 0; i--) begin
      rem   = {rem[27:0], rad[2*i+1 -: 2]};
      trial = {1'b0, r, 2'b01};
      if (rem >= trial) begin
        rem = rem - trial;
        r   = {r[25:0], 1'b1};
      end else begin
        r   = {r[25:0], 1'b0};
      end
    end
  end

  // sqrt(a) = r * 2^((x - 28) / 2) with x = en - 150 - odd; in fp32_round's convention (bit 26 at exponent
  // `exp`): exp = (x - 28)/2 + 153 = (en - odd + 128) / 2.
  logic signed [9:0] ex;
  assign ex = (en - 10'(odd) + 10'sd128) >>> 1;

  logic [31:0] rounded;
  fp32_round #(.W(27), .EW(10)) u_round (
    .sign(1'b0), .exp(ex), .sig(r), .sticky(rem != 30'd0), .y(rounded)
  );

  logic a_nan;
  assign a_nan = (a[30:23] == 8'hFF) && (a[22:0] != 23'd0);

  always_comb begin
    if (a_nan)                          y = 32'h7FC00000;
    else if (a[30:0] == 31'd0)          y = a;                   // +-0
    else if (a[31])                     y = 32'h7FC00000;        // negative (incl. -inf)
    else if (a[30:23] == 8'hFF)         y = a;                   // +inf
    else                                y = rounded;
  end
endmodule
