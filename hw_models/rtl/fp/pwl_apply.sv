// pwl_apply: the evaluation of a selected entry, doc/isa.md section 7.6 (hw_models.numerics.pwl_eval):
//   y = icpt                       if slope = ±0 and x = ±inf   (a flat exterior entry stays a constant)
//     = (slope ⊗ x) ⊕ icpt         otherwise (NaN propagates).
// Combinational, no clock (latency 0).
module pwl_apply (
  input  logic [31:0] x,
  input  logic [31:0] slope,
  input  logic [31:0] icpt,
  output logic [31:0] y
);
  logic [31:0] prod, sum;
  fp32_mul u_mul (.a(slope), .b(x), .y(prod));
  fp32_add u_add (.a(prod), .b(icpt), .y(sum));

  logic flat_inf;
  assign flat_inf = (slope[30:0] == 31'd0) && (x[30:0] == 31'h7F800000);
  assign y = flat_inf ? icpt : sum;
endmodule
