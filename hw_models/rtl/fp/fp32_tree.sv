// fp32_tree: the binary reduction tree of doc/isa.md section 7.1 over N lanes (N a power of two, >= 1):
// level 1 adds lanes (2j, 2j+1), level 2 adds the level-1 results (2j, 2j+1), ... log2(N) levels, every add
// an fp32_add (RNE). Lane i = x[32*i +: 32]; y = the root (y = x for N = 1). No padding here: the caller
// supplies +0 in unused lanes (7.1 pads with +0 and adds the pads).
// Combinational, no clock (latency 0); N-1 adders, log2(N) deep.
module fp32_tree #(
  parameter int N = 8
) (
  input  logic [N*32-1:0] x,
  output logic [31:0]     y
);
  // Heap numbering: node k (0 <= k < N-1) = node(2k+1) + node(2k+2); the leaves are nodes N-1 .. 2N-2 in
  // lane order, so level 1 adds the lane pairs (2j, 2j+1) and node 0 is the root.
  logic [31:0] node [2*N-1];

  for (genvar i = 0; i < N; i++) begin : g_leaf
    assign node[N - 1 + i] = x[32*i +: 32];
  end
  for (genvar k = 0; k < N - 1; k++) begin : g_add
    fp32_add u_add (.a(node[2*k + 1]), .b(node[2*k + 2]), .y(node[k]));
  end
  assign y = node[0];
endmodule
