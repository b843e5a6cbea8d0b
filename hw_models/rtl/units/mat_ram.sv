// mat_ram: simple dual-port RAM (one write port, one registered read port): mat_engine.sv's K/V head buffer
// banks and Q/P row buffer (doc/isa.md 7.4), mvm_lane.sv's weight rows and accumulator rows. Computes nothing.
// Cycle behaviour: a write is stored at the clock edge; rdata is the word at raddr sampled at the edge
// where re is high (one cycle read latency; reading an address written at the same edge gives the old word).
module mat_ram #(
  parameter int W = 256,
  parameter int DEPTH = 64,
  parameter int AW = (DEPTH > 1) ? $clog2(DEPTH) : 1
) (
  input  logic          clk,
  input  logic          we,
  input  logic [AW-1:0] waddr,
  input  logic [W-1:0]  wdata,
  input  logic          re,
  input  logic [AW-1:0] raddr,
  output logic [W-1:0]  rdata
);
  logic [W-1:0] mem [DEPTH];

  always_ff @(posedge clk) begin
    if (we) mem[waddr] <= wdata;
    if (re) rdata <= mem[raddr];
  end
endmodule
