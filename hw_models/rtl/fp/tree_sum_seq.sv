// tree_sum_seq: the doc/isa.md section 7.1 reduction (tree_sum) of a stream that arrives L lanes per cycle.
//
// A reduction is a run of beats from the one with in_first to the one with in_last (in_valid high; gaps
// with in_valid low are allowed anywhere; a one-beat reduction has both flags). in_first makes the
// accumulator restart from +0 at the reduction's first block. Beat j carries terms t[jL .. jL+L-1] (lane i = in_lanes[32i +: 32]);
// the caller puts +0 in the lanes of the last beat that lie past the end (7.1 pads with +0). The result is
// exactly hw_models.numerics.tree_sum over the terms with T lanes: each T-lane block is reduced by the binary
// tree, the block sums are accumulated acc = ((+0 ⊕ b0) ⊕ b1) ⊕ ...
//
// How: each beat is reduced by an L-lane fp32_tree (the subtree of the full T-lane tree over those lanes,
// levels 1..log2(L)). The R = T/L beat sums of a block are then combined pairwise by D = log2(R) pipelined
// levels (levels log2(L)+1 .. log2(T) of the full tree): level l holds the left (even) operand until its
// right neighbour arrives. When the last beat of a reduction ends a block early, the missing right
// operands are subtrees of +0 pads, which sum to +0: the level adds +0 to the left operand (that add is
// kept: -0 + +0 = +0, exactly as the padded tree does). The block sums go to the accumulator.
//
// Cycle behaviour: out_valid pulses for one cycle LATENCY = log2(T/L) + 2 cycles after the clock edge that
// takes the in_last beat (i.e. in_last in cycle c -> out_valid in cycle c + log2(T/L) + 2; tiny/vcu128
// with L = 8, T = 128: 6), with out_sum valid in that cycle (out_sum holds until the next block sum).
// Stages: 1 register after the L-lane tree, 1 per combining level, 1 for the accumulator.
// One beat per cycle is accepted at all times (no back-pressure); the next reduction may start (in_first)
// in the cycle right after in_last. Results come out in order. rst_n (asynchronous, active low) clears
// the valid bits.
module tree_sum_seq import dlavm_pkg::*; #(
  parameter int L = 8,                 // lanes per beat (power of 2, divides T)
  parameter int T = TREE_LANES         // tree lanes of 7.1 (power of 2)
) (
  input  logic            clk,
  input  logic            rst_n,
  input  logic            in_valid,
  input  logic            in_first,
  input  logic            in_last,
  input  logic [L*32-1:0] in_lanes,
  output logic            out_valid,
  output logic [31:0]     out_sum
);
  localparam int R  = T / L;           // beats per T-lane block
  localparam int D  = $clog2(R);       // pairwise combining levels

  // ---- stage 0: the L-lane tree of this beat, registered -----------------------------------------
  logic [31:0] beat_sum;
  fp32_tree #(.N(L)) u_tree (.x(in_lanes), .y(beat_sum));

  // Level l (0..D) register: a value that is the sum of 2^l beats (level 0: one beat) and its
  // first/last-of-reduction tags.
  logic        v_valid [D+1];
  logic [31:0] v_val   [D+1];
  logic        v_first [D+1];
  logic        v_last  [D+1];

  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) v_valid[0] <= 1'b0;
    else        v_valid[0] <= in_valid;
  end
  always_ff @(posedge clk) begin
    if (in_valid) begin
      v_val[0]   <= beat_sum;
      v_first[0] <= in_first;
      v_last[0]  <= in_last;
    end
  end

  // ---- levels 1..D: pairwise combination of the beat sums --------------------------------------------
  // Level l alternates left / right operands: `have_left` says a left operand waits in `hold`. A block
  // has 2^(D-l) values at level l (even), and the last value of a reduction always leaves the level
  // empty, so the alternation restarts in step with every block and every reduction.
  for (genvar l = 0; l < D; l++) begin : g_lvl
    logic [31:0] hold;                 // the left operand waiting for its right neighbour
    logic        hold_first;
    logic        have_left;
    logic [31:0] sum;
    logic        emit;
    assign emit = v_valid[l] && (have_left || v_last[l]);
    // right operand: hold + value; a left value that ends the reduction: value + (+0) (its right subtree
    // is all pads).
    fp32_add u_add (.a(have_left ? hold : v_val[l]), .b(have_left ? v_val[l] : 32'd0), .y(sum));

    always_ff @(posedge clk or negedge rst_n) begin
      if (!rst_n)          have_left <= 1'b0;
      else if (v_valid[l]) have_left <= !have_left && !v_last[l];
    end
    always_ff @(posedge clk) begin
      if (v_valid[l] && !have_left) begin
        hold       <= v_val[l];
        hold_first <= v_first[l];
      end
      if (emit) begin
        v_val[l+1]   <= sum;
        v_first[l+1] <= have_left ? hold_first : v_first[l];
        v_last[l+1]  <= v_last[l];
      end
    end
    always_ff @(posedge clk or negedge rst_n) begin
      if (!rst_n) v_valid[l+1] <= 1'b0;
      else        v_valid[l+1] <= emit;
    end
  end

  // ---- accumulator: acc = (first ? +0 : acc) ⊕ block sum --------------------------------------------
  logic [31:0] acc_q, acc_in, acc_next;
  assign acc_in = v_first[D] ? 32'd0 : acc_q;
  fp32_add u_acc (.a(acc_in), .b(v_val[D]), .y(acc_next));

  always_ff @(posedge clk) begin
    if (v_valid[D]) acc_q <= acc_next;
  end
  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) out_valid <= 1'b0;
    else        out_valid <= v_valid[D] && v_last[D];
  end
  assign out_sum = acc_q;
endmodule
