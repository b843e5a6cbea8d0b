// sfu_row_reader: the input side shared by sfu_norm and sfu_softmax (their private helper).
// Reads the row operands of a row-wise SFU instruction with a few LARGE requests. The source tensor
// [rows, cols] (fp16, or fp32 with in_fp32) is one contiguous range; its rows are written, converted to fp32,
// into NSLOT on-chip row-buffer slots in ROW order: element j of a row goes to bank j mod L at word j / L
// (L = SFU_LANES), so a pass reads row word w (elements wL .. wL+L-1) from all banks at one address. Row r
// goes to slot r mod NSLOT, written only while that slot is free (slot_full low); it is marked full when
// complete and the consumer frees it with release.
// gamma [cols] fp16 (use_gam) and beta [cols] fp16 (use_bet) are not unpacked: their beats are handed out
// raw (g_en, g_bet, g_addr = beat index, g_data), one beat per cycle as they arrive; gb_ok says all arrived.
// Request order (responses come back in it): with use_gam, first the source beats that lie wholly inside row
// 0 (so the first row does not wait behind gamma), then gamma, beta, then the rest of the source in chunks of
// CHUNK bytes (multiples of the beat, so the element stream stays contiguous across requests); without
// use_gam, the source in chunks. Source requests go out while fewer than RB of their beats wait (reads are
// charged to the channels when accepted: a long read queue would delay the unit's own writes). Rows are packed (a row may start at any element of a beat); the unpacker
// walks the source beats one L-element group per cycle and writes the part of the group that belongs to the
// current row, rotated into the banks (a group holding the end of one row and the start of the next takes two
// cycles). Bytes past the operand in the last beat of a request are dropped.
// fill_row / fill_words: the row being written and how many of its words are complete (words 0 ..
// fill_words-1 may be read from the next cycle on), so a consumer may follow a row as it streams in.
// Cycle behaviour: one group (L elements) per cycle; a source beat is taken in the cycle its last group is
// used, so the stream runs at L elements per cycle whenever the slots allow. idle: every request issued and
// every beat of them consumed.
module sfu_row_reader import dlavm_pkg::*; #(
  parameter int ROWCAP = 8192,                       // elements per row buffer slot (multiple of L)
  parameter int NSLOT = 4,                           // row buffer slots (power of two)
  parameter int WB = $clog2(ROWCAP / SFU_LANES),     // word address bits of a slot
  parameter int GWB = $clog2(ROWCAP * 2 / PORT_BYTES) // beat address bits of gamma / beta
) (
  input  logic                       clk, rst_n,
  input  logic                       go,              // pulse: start reading (inputs below stay stable)
  input  logic [MEM_AW-1:0]          src_addr, gam_addr, bet_addr,
  input  logic                       use_gam, use_bet, in_fp32,
  input  logic [31:0]                rows, cols,      // rows > 0, 0 < cols <= ROWCAP
  output logic                       rd_req_valid,
  input  logic                       rd_req_ready,
  output logic [MEM_AW-1:0]          rd_req_addr,
  output logic [31:0]                rd_req_bytes,
  input  logic                       rd_rsp_valid,
  output logic                       rd_rsp_ready,
  input  logic [PORT_BITS-1:0]       rd_rsp_data,
  input  logic                       rd_rsp_last,
  // row buffer writes (one port per bank)
  output logic [SFU_LANES-1:0]       w_en,
  output logic [SFU_LANES*WB-1:0]    w_addr,          // bank b: w_addr[b*WB +: WB]
  output logic [SFU_LANES*32-1:0]    w_data,          // bank b: fp32 element
  output logic [$clog2(NSLOT)-1:0]   w_slot,
  // gamma / beta beats
  output logic                       g_en,
  output logic                       g_bet,
  output logic [GWB-1:0]             g_addr,
  output logic [PORT_BITS-1:0]       g_data,
  output logic                       gb_ok,
  output logic [NSLOT-1:0]           slot_full,
  input  logic                       release_v,
  input  logic [$clog2(NSLOT)-1:0]   release_slot,
  output logic [31:0]                fill_row,
  output logic [31:0]                fill_words,
  // per source row, while it streams in: the maximum of its valid elements (softmax, doc/isa.md 7.5: exact;
  // valid = all, or with causal the columns j <= pos0 + (row mod m)); row_nan: a valid element is NaN.
  // Both are per slot, valid while slot_full.
  input  logic                       causal,
  input  logic [31:0]                pos0, mq,
  output logic [NSLOT*32-1:0]        row_max,         // slot s: row_max[32s +: 32]
  output logic [NSLOT-1:0]           row_nan,
  output logic                       idle
);
  localparam int L     = SFU_LANES;
  localparam int LB    = $clog2(L);
  localparam int SB    = $clog2(NSLOT);
  localparam int G16   = PORT_BYTES / (2 * L);        // groups per beat, fp16
  localparam int G32   = PORT_BYTES / (4 * L);        // groups per beat, fp32
  localparam int GB    = (G16 > 1) ? $clog2(G16) : 1;
  localparam int G32B  = (G32 > 1) ? $clog2(G32) : 1;
  localparam longint CHUNK = 8 * PORT_BYTES;          // bytes per source request
  localparam int RB    = 16;                          // source beats requested ahead of the unpacker
  localparam int PBB   = $clog2(PORT_BYTES);

  localparam logic [2:0] P_HEAD = 3'd0, P_GAM = 3'd1, P_BET = 3'd2, P_SRC = 3'd3, P_END = 3'd4;

  // ---------------- request generator ----------------
  logic [2:0]        qph;
  logic [MEM_AW-1:0] qaddr;
  logic [63:0]       qleft;
  logic [63:0]       src_bytes, head_bytes;
  logic [31:0]       gb_bytes;
  logic [2:0]        ph_first, ph_after_gam, ph_after_bet, ph_after_head;
  always_comb begin
    src_bytes  = (64'(rows) * 64'(cols)) << (in_fp32 ? 2 : 1);
    src_bytes  = (src_bytes + 64'd31) & ~64'd31;
    head_bytes = use_gam ? ((64'(cols) << (in_fp32 ? 2 : 1)) / 64'(PORT_BYTES)) * 64'(PORT_BYTES) : 64'd0;
    if (head_bytes > src_bytes) head_bytes = src_bytes;
    gb_bytes   = ((cols << 1) + 32'd31) & ~32'd31;
    ph_after_bet  = (src_bytes > head_bytes) ? P_SRC : P_END;
    ph_after_gam  = use_bet ? P_BET : ph_after_bet;
    ph_after_head = use_gam ? P_GAM : ph_after_bet;
    ph_first      = (head_bytes != 0) ? P_HEAD : ph_after_head;
  end
  // source requests only while fewer than RB of their beats wait for the unpacker: reads are charged to the
  // channel when accepted, so a long read queue would hold up the unit's own posted writes behind it
  logic [31:0] ob;                                    // source beats requested and not yet taken
  logic        q_src;
  assign q_src = (qph == P_HEAD) || (qph == P_SRC);
  assign rd_req_valid = (qph != P_END) && (!q_src || ob < 32'(RB));
  always_comb begin
    unique case (qph)
      P_GAM:   begin rd_req_addr = gam_addr; rd_req_bytes = gb_bytes; end
      P_BET:   begin rd_req_addr = bet_addr; rd_req_bytes = gb_bytes; end
      P_HEAD:  begin rd_req_addr = qaddr; rd_req_bytes = 32'(head_bytes); end
      default: begin rd_req_addr = qaddr; rd_req_bytes = (qleft > 64'(CHUNK)) ? 32'(CHUNK) : qleft[31:0]; end
    endcase
  end
  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      qph <= P_END; qaddr <= '0; qleft <= '0;
    end else if (go) begin
      qph <= ph_first; qaddr <= src_addr; qleft <= src_bytes;
    end else if (rd_req_valid && rd_req_ready) begin
      unique case (qph)
        P_HEAD: begin
          qph <= ph_after_head;
          qaddr <= qaddr + MEM_AW'(head_bytes);
          qleft <= qleft - head_bytes;
        end
        P_GAM:   qph <= ph_after_gam;
        P_BET:   qph <= ph_after_bet;
        default: begin
          qaddr <= qaddr + MEM_AW'(CHUNK);
          qleft <= qleft - 64'(CHUNK);
          if (qleft <= 64'(CHUNK)) qph <= P_END;
        end
      endcase
    end
  end

  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) ob <= '0;
    else if (go) ob <= '0;
    else ob <= ob + ((rd_req_valid && rd_req_ready && q_src) ? ((rd_req_bytes + 32'(PORT_BYTES - 1)) >> PBB) : 32'd0)
                  - 32'(rd_rsp_valid && rd_rsp_ready && !is_gb);
  end

  // ---------------- response phase: which operand the arriving beats belong to ----------------
  logic [2:0]     pph;
  logic           is_gb;
  logic [GWB-1:0] gcnt;
  assign is_gb = (pph == P_GAM) || (pph == P_BET);
  assign g_en   = rd_rsp_valid && is_gb;
  assign g_bet  = (pph == P_BET);
  assign g_addr = gcnt;
  assign g_data = rd_rsp_data;
  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      pph <= P_END; gcnt <= '0; gb_ok <= 1'b0;
    end else if (go) begin
      pph <= ph_first; gcnt <= '0; gb_ok <= !use_gam;
    end else if (rd_rsp_valid && rd_rsp_ready) begin
      gcnt <= (is_gb && !rd_rsp_last) ? gcnt + GWB'(1) : '0;
      if (rd_rsp_last) begin
        unique case (pph)
          P_HEAD: pph <= ph_after_head;
          P_GAM:  begin pph <= ph_after_gam; if (!use_bet) gb_ok <= 1'b1; end
          P_BET:  begin pph <= ph_after_bet; gb_ok <= 1'b1; end
          default: ;
        endcase
      end
    end
  end

  // ---------------- unpacker ----------------
  logic                 uact;          // source rows still to unpack
  logic                 beat_v;
  logic [PORT_BITS-1:0] beat;
  logic [GB-1:0]        gi;            // group within the beat
  logic signed [33:0]   d;             // element index of the group's lane 0 relative to the row start
  logic [31:0]          r;             // source row being filled
  logic [NSLOT-1:0]     full_q;
  logic                 beat_last;     // the held beat is its request's last
  logic                 drain;         // the operand ended before its request's last beat: drop beats up to it
  logic [SB-1:0]        rs;            // slot of row r
  assign slot_full = full_q;
  assign rs = r[SB-1:0];
  assign fill_row = r;
  assign fill_words = (d > 0) ? 32'(d >>> LB) : 32'd0;

  logic               can_step, row_end, grp_adv, seg_end, last_grp, beat_free;
  logic signed [33:0] rem;
  logic [LB:0]        lo, hi;
  always_comb begin
    can_step = beat_v && !drain && uact && !full_q[rs];
    rem      = $signed({2'b0, cols}) - d;
    lo       = (d < 0) ? (LB+1)'(-d) : '0;
    hi       = (rem < 34'(L)) ? (LB+1)'(rem) : (LB+1)'(L);
    row_end  = (rem <= 34'(L));
    grp_adv  = !row_end || (rem == 34'(L));
    seg_end  = row_end && (r == rows - 32'd1);
    last_grp = in_fp32 ? (32'(gi) == G32 - 1) : (32'(gi) == G16 - 1);
    beat_free = (beat_v && drain) || (can_step && (seg_end || (grp_adv && last_grp)));
  end
  assign rd_rsp_ready = is_gb || !beat_v || beat_free;

  // the group's lanes as fp32
  logic [L*16-1:0] g16;
  logic [L*32-1:0] g32, gf;
  logic [G32B-1:0] gi32;
  assign gi32 = G32B'(gi);
  assign g16 = beat[32'(gi) * (L*16) +: L*16];
  assign g32 = beat[32'(gi32) * (L*32) +: L*32];
  for (genvar i = 0; i < L; i++) begin : g_cv
    logic [31:0] c;
    fp16_to_fp32 u_cv (.a(g16[16*i +: 16]), .y(c));
    assign gf[32*i +: 32] = in_fp32 ? g32[32*i +: 32] : c;
  end

  // bank writes: bank b takes lane i = (b - d) mod L, element j = d + i of the row
  always_comb begin
    for (int b = 0; b < L; b++) begin
      logic [LB-1:0]      ib;
      logic [WB-1:0]      j;
      ib = LB'(b) - d[LB-1:0];
      j  = WB'((d + 34'(ib)) >>> LB);     // word of element d + ib
      w_en[b]            = can_step && ({1'b0, ib} >= lo) && ({1'b0, ib} < hi);
      w_addr[b*WB +: WB] = j;
      w_data[b*32 +: 32] = gf[32*ib +: 32];
    end
  end
  assign w_slot = rs;

  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      uact <= 1'b0; beat_v <= 1'b0; beat <= '0; gi <= '0; d <= '0; r <= '0; full_q <= '0;
      beat_last <= 1'b0; drain <= 1'b0;
    end else if (go) begin
      uact <= 1'b1; beat_v <= 1'b0; gi <= '0; d <= '0; r <= '0; full_q <= '0;
      drain <= 1'b0;
    end else begin
      if (beat_v && drain && beat_last) drain <= 1'b0;
      if (rd_rsp_valid && rd_rsp_ready && !is_gb) begin
        beat_v <= 1'b1; beat <= rd_rsp_data; beat_last <= rd_rsp_last; gi <= '0;
      end else if (beat_free) begin
        beat_v <= 1'b0; gi <= '0;
      end else if (can_step && grp_adv) begin
        gi <= gi + GB'(1);
      end
      if (release_v) full_q[release_slot] <= 1'b0;
      if (can_step) begin
        if (row_end) begin
          full_q[rs] <= 1'b1;
          r <= r + 32'd1;
        end
        if (seg_end) begin
          d <= '0;
          drain <= !beat_last;   // (never with exact request sizes: the operand's end is in the last beat)
          uact <= 1'b0;
        end else if (row_end) begin
          d <= d - $signed({2'b0, cols}) + (grp_adv ? 34'(L) : 34'd0);
        end else begin
          d <= d + 34'(L);
        end
      end
    end
  end
  assign idle = (qph == P_END) && !uact && !beat_v;

  // ---------------- row maximum (softmax) ----------------
  function automatic logic flt(input logic [31:0] a, input logic [31:0] b);   // a < b, non-NaN, -0 == +0
    if (a[30:0] == 31'd0 && b[30:0] == 31'd0) return 1'b0;
    if (a[31] != b[31]) return a[31];
    return a[31] ? (a[30:0] > b[30:0]) : (a[30:0] < b[30:0]);
  endfunction
  logic [31:0]        qr;                // r mod m
  logic [31:0]        rmax, gmax;
  logic               rnan, gnan;
  logic signed [35:0] vlim;              // lanes i <= vlim are causally valid
  always_comb begin
    vlim = $signed({4'd0, pos0}) + $signed({4'd0, qr}) - 36'(d);
    gmax = rmax; gnan = rnan;
    for (int i = 0; i < L; i++) begin
      logic [31:0] xi;
      xi = gf[32*i +: 32];
      if ((32'(i) >= 32'(lo)) && (32'(i) < 32'(hi)) && (!causal || $signed(36'(i)) <= vlim)) begin
        if (xi[30:23] == 8'hFF && xi[22:0] != 23'd0) gnan = 1'b1;
        else if (flt(gmax, xi)) gmax = xi;
      end
    end
  end
  always_ff @(posedge clk or negedge rst_n) begin
    if (!rst_n) begin
      qr <= '0; rmax <= 32'hFF800000; rnan <= 1'b0; row_max <= '0; row_nan <= '0;
    end else if (go) begin
      qr <= '0; rmax <= 32'hFF800000; rnan <= 1'b0;
    end else if (can_step) begin
      if (row_end) begin
        row_max[32*rs +: 32] <= gmax;
        row_nan[rs] <= gnan;
        rmax <= 32'hFF800000; rnan <= 1'b0;
        qr <= (qr == mq - 32'd1) ? 32'd0 : qr + 32'd1;
      end else begin
        rmax <= gmax; rnan <= gnan;
      end
    end
  end
endmodule
