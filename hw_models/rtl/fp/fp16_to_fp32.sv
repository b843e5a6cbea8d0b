// fp16_to_fp32: exact conversion of an IEEE binary16 value to binary32 (doc/isa.md section 1:
// "fp16 and fp32 values read from memory are converted to fp32 exactly"). Subnormal fp16 inputs become
// normal fp32 values; +-0, +-inf keep their sign; a NaN stays a NaN (payload shifted into the fp32 fraction,
// quiet bit kept as given).
// Combinational, no clock (latency 0).
module fp16_to_fp32 (
  input  logic [15:0] a,
  output logic [31:0] y
);
  logic       s;
  logic [4:0] e;
  logic [9:0] m;
  assign {s, e, m} = a;

  // Position of the leading one of a subnormal fraction (0..9).
  logic [3:0] msb;
  always_comb begin
    msb = 4'd0;
    for (int i = 0; i < 10; i++) if (m[i]) msb = 4'(i);
  end

  logic [9:0] sub_frac;   // the subnormal's fraction with the leading one shifted out (top-aligned)
  assign sub_frac = 10'(m << (4'd10 - msb));

  always_comb begin
    if (e == 5'd31)
      y = {s, 8'hFF, m, 13'd0};                                   // inf / NaN
    else if (e != 5'd0)
      y = {s, 8'(e) + 8'd112, m, 13'd0};                          // normal: rebias 15 -> 127
    else if (m == 10'd0)
      y = {s, 31'd0};                                             // +-0
    else
      y = {s, 8'(msb) + 8'd103, sub_frac, 13'd0};                 // m * 2^-24 = 2^(msb-24) * 1.f
  end
endmodule
