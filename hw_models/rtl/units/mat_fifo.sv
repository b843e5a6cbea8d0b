// mat_fifo: synchronous FIFO private to the attention matrix engine (mat_engine.sv, doc/isa.md 7.4).
// Computes nothing: stores up to DEPTH (a power of two) words of W bits in order. A push and a pop may
// happen in the same cycle (also when full: the pop frees the slot first). dout shows the oldest word
// combinationally (first-word fall-through); count/empty/full are registered state. No latency beyond
// the register write: a word pushed in cycle t is visible at dout in cycle t+1.
module mat_fifo #(
  parameter int W = 8,
  parameter int DEPTH = 4
) (
  input  logic                       clk,
  input  logic                       rst_n,
  input  logic                       clear,     // synchronous empty
  input  logic                       push,
  input  logic [W-1:0]               din,
  input  logic                       pop,       // only when !empty
  output logic [W-1:0]               dout,
  output logic                       empty,
  output logic                       full,
  output logic [$clog2(DEPTH):0]     count
);
  localparam int AW = $clog2(DEPTH);

  logic [W-1:0]  mem [DEPTH];
  logic [AW-1:0] rp, wp;

  assign dout  = mem[rp];
  assign empty = (count == '0);
  assign full  = (count == (AW+1)'(DEPTH));

  always_ff @(posedge clk) begin
    if (push && (!full || pop)) mem[wp] <= din;
  end

  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      rp <= '0; wp <= '0; count <= '0;
    end else if (clear) begin
      rp <= '0; wp <= '0; count <= '0;
    end else begin
      if (push && (!full || pop)) wp <= wp + 1'b1;
      if (pop && !empty) rp <= rp + 1'b1;
      case ({push && (!full || pop), pop && !empty})
        2'b10:   count <= count + 1'b1;
        2'b01:   count <= count - 1'b1;
        default: ;
      endcase
    end
  end
endmodule
