/*
 * migplane test guest: a bare-metal 32-bit multiboot kernel.
 *
 * Why bare metal: under TCG a Linux guest was corrupted when migrated while
 * dirtying memory; this guest is small, deterministic and self-checking.
 *
 * It prints on COM1:
 *   MPBOOT boot=<16 hex> mem_kib=<n> ...          once, at boot
 *   MPSTAMPED mib=<n> sum=<8 hex>                  after stamp_mib is filled
 *   MPDISK sum=<8 hex> lba=<n> sectors=<n>         after disk_write=1
 *   MPTICK boot=<16 hex> n=<counter> ms=<guest ms> pass=<n> bad=<n> pos=<n>
 *                                                 every tick_ms (PIT paced);
 *                                                 pass and pos (words into the
 *                                                 current pass) count the work
 *                                                 the guest got done
 *   MPCORRUPT addr=<8 hex> ...                     first memory mismatch
 * Command line (key=value): tick_ms (100), dirty_mib (0), rate_mib_s (0),
 * stamp_mib (0), verify_mib_s (8), tlb_flush (1), disk_write (0),
 * disk_lba (1), disk_sectors (4).
 *
 * Every word written is verified before it is overwritten (dirty region)
 * or re-read at verify_mib_s (stamp region), so memory lost in a migration
 * shows up as bad=<n> > 0 on the destination's console.
 */
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;
typedef unsigned long long u64;

#define COM1 0x3F8
#define REGION_BASE (2u << 20)
#define MIB (1u << 20)

extern char __kernel_end[];
extern void irq0_stub(void);
extern void ignore_stub(void);
extern void fault_stub(void);

/*
 * Everything the tick loop carries from one iteration to the next, and the
 * IRQ0 counter, on a page of its own (st). With tlb_flush=1 every write to it
 * follows an invlpg of that page (state_arm, ST_SET): see the comment above
 * flush_tlb() for why. Hot positions are kept in registers for a step and
 * stored once at its end.
 */
struct loop_state {
    u32 ticks_ms;                   /* written by the IRQ0 handler */
    u32 n, next_tick, last_ms;      /* the tick counter and its schedule */
    u32 dirty_acc, verify_acc;      /* rate remainders */
    u32 dirty_pos, dirty_pass, dirty_base_val;
    u32 verify_pos, bad, reported;
};
static volatile union {
    struct loop_state s;
    u8 page[4096];
} state_page __attribute__((aligned(4096)));
#define st (state_page.s)
static u32 tlb_flush;

static inline void state_arm(void)
{
    if (tlb_flush)
        __asm__ volatile("invlpg (%0)" : : "r"(&state_page) : "memory");
}

/* Write one field of the loop state through a freshly filled TLB entry. */
#define ST_SET(field, value) do { u32 v_ = (value); state_arm(); st.field = v_; } while (0)

/* gcc may emit calls to these even when freestanding. */
void *memset(void *d, int c, unsigned int n)
{
    u8 *p = d;
    while (n--)
        *p++ = (u8)c;
    return d;
}

void *memcpy(void *d, const void *s, unsigned int n)
{
    u8 *p = d;
    const u8 *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline u64 rdtsc(void) { u32 lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((u64)hi << 32) | lo; }

/* ---- serial ---- */
static void serial_init(void)
{
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x80);
    outb(COM1 + 0, 0x01);           /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);           /* 8N1 */
    outb(COM1 + 2, 0xC7);
    outb(COM1 + 4, 0x03);
}

static void putc(char c)
{
    while (!(inb(COM1 + 5) & 0x20))
        ;
    outb(COM1, (u8)c);
}

static void puts(const char *s)
{
    while (*s)
        putc(*s++);
}

static void putdec(u32 v)
{
    char buf[11];
    int i = 0;
    do {
        buf[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i)
        putc(buf[--i]);
}

static void puthex(u32 v, int digits)
{
    while (digits--)
        putc("0123456789abcdef"[(v >> (digits * 4)) & 0xF]);
}

static void puthex64(u64 v)
{
    puthex((u32)(v >> 32), 8);
    puthex((u32)v, 8);
}

/* ---- mixing ---- */
static u32 mix32(u32 x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static u64 mix64(u64 x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/* ---- command line ---- */
static const char *cmdline = "";

static int streq_prefix(const char *s, const char *key)
{
    while (*key)
        if (*s++ != *key++)
            return 0;
    return *s == '=';
}

static u32 arg_u32(const char *key, u32 dflt)
{
    const char *p = cmdline;
    u32 klen = 0;
    while (key[klen])
        klen++;
    while (*p) {
        while (*p == ' ')
            p++;
        if (streq_prefix(p, key)) {
            const char *q = p + klen + 1;
            u32 v = 0;
            int any = 0;
            while (*q >= '0' && *q <= '9') {
                v = v * 10 + (u32)(*q++ - '0');
                any = 1;
            }
            return any ? v : dflt;
        }
        while (*p && *p != ' ')
            p++;
    }
    return dflt;
}

/* ---- interrupts and timer ---- */
struct idt_entry {
    u16 off_lo, sel;
    u8 zero, flags;
    u16 off_hi;
} __attribute__((packed));

static struct idt_entry idt[256];

static void idt_set(int vec, void (*fn)(void))
{
    u32 a = (u32)fn;
    idt[vec].off_lo = (u16)a;
    idt[vec].sel = 0x08;
    idt[vec].zero = 0;
    idt[vec].flags = 0x8E;          /* present, ring 0, 32-bit interrupt gate */
    idt[vec].off_hi = (u16)(a >> 16);
}

void irq0_handler(void)
{
    ST_SET(ticks_ms, st.ticks_ms + 1);
    outb(0x20, 0x20);
}

void fault_handler(void)
{
    puts("\nMPFAULT cpu exception, halting\n");
}

static void interrupts_init(void)
{
    struct { u16 limit; u32 base; } __attribute__((packed)) desc;
    int i;
    for (i = 0; i < 32; i++)
        idt_set(i, fault_stub);
    for (i = 32; i < 256; i++)
        idt_set(i, ignore_stub);
    idt_set(32, irq0_stub);
    desc.limit = sizeof(idt) - 1;
    desc.base = (u32)idt;
    __asm__ volatile("lidt %0" : : "m"(desc));

    /* Remap the PICs to vectors 32..47 and unmask only IRQ0 (the PIT). */
    outb(0x20, 0x11); outb(0xA0, 0x11);
    outb(0x21, 0x20); outb(0xA1, 0x28);
    outb(0x21, 0x04); outb(0xA1, 0x02);
    outb(0x21, 0x01); outb(0xA1, 0x01);
    outb(0x21, 0xFE); outb(0xA1, 0xFF);

    /* PIT channel 0, mode 2, ~1000 Hz: one interrupt per millisecond. */
    outb(0x43, 0x34);
    outb(0x40, 1193 & 0xFF);
    outb(0x40, 1193 >> 8);
}

static u32 now_ms(void) { return st.ticks_ms; }

/*
 * Why the guest flushes TLBs although paging is off: QEMU 7.2's TCG only
 * records a write in the migration dirty bitmap when the page's softmmu TLB
 * entry is still marked "not dirty"; a migration bitmap sync clears the bit
 * without re-arming entries already in the TLB, so later writes through them
 * are lost and the destination gets stale pages. An invlpg before each
 * dirtied page and a full flush (toggling CR4.PGE) right after every wake-up
 * (each millisecond) re-arm the trap, as an OS's routine TLB flushes would.
 *
 * The loop's own state (st: the tick counter and its schedule, the region
 * positions, ticks_ms from the IRQ0 handler) is also written only through a
 * freshly filled TLB entry (an invlpg of its page before each store), so
 * the final stop-and-copy sees its last values. Before, the IRQ0 handler
 * and the loop's first stores of each wake-up came before the flush; the
 * page was re-armed by a later store within the same millisecond, so the
 * exposure was small. Measured (2 lab hosts, QEMU 7.2 TCG, libvirt
 * migrateToURI3 live+p2p over the migration plane, dirty_mib=24 at 40 MiB/s,
 * stamp_mib=32): with the old layout 0 replayed ticks in 210 migrations
 * (tick_ms 20 and 50, back and forth and one per fresh guest, also with both
 * host CPUs saturated), with this one 0 in 110; no bad word in either. The
 * "1 to 3 ticks printed again at the handover in ~1 migration of 10"
 * reported before was not reproduced. What did happen (1 in 210) was a tick
 * line cut in two by the switch-over, its start on the source's console and
 * its end on the destination's, which read like a lost tick until
 * ConsoleWatcher learnt to join such lines.
 *
 * tlb_flush=0 turns all of this off to show the QEMU problem, and with it
 * the replays: in 89 back-and-forth migrations the destination once printed
 * again the source's last tick (same n, same ms: the whole state page was
 * stale) with 178258 bad words, twice hit MPCORRUPT, and twice stopped
 * ticking; 0 of 40 single migrations of a freshly booted guest showed
 * anything. It is rare: show it with many migrations.
 */
static void flush_tlb(void)
{
    u32 cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    __asm__ volatile("mov %0, %%cr4" : : "r"(cr4 ^ 0x80) : "memory");
    __asm__ volatile("mov %0, %%cr4" : : "r"(cr4) : "memory");
}

/* ---- boot id: TSC mixed with the RTC and the PIT phase ---- */
static u8 cmos(u8 reg)
{
    outb(0x70, reg);
    return inb(0x71);
}

static u64 make_boot_id(void)
{
    u64 x = rdtsc();
    u32 rtc = 0;
    int i;
    static const u8 regs[] = {0x00, 0x02, 0x04, 0x07, 0x08, 0x09};
    for (i = 0; i < 6; i++)
        rtc = (rtc << 5) ^ cmos(regs[i]);
    outb(0x43, 0x00);               /* latch channel 0 */
    rtc ^= (u32)inb(0x40) << 24;
    rtc ^= (u32)inb(0x40) << 16;
    x = mix64(x ^ ((u64)rtc << 17));
    x = mix64(x ^ rdtsc());
    return x ? x : 1;
}

/* ---- memory regions ---- */
static u32 boot_lo, boot_hi;
static u32 *dirty_base, dirty_words;
static u32 *stamp_base, stamp_words;

static void corrupt(u32 *addr, u32 want, u32 got)
{
    ST_SET(bad, st.bad + 1);
    if (st.reported)
        return;
    ST_SET(reported, 1);
    puts("MPCORRUPT addr=");
    puthex((u32)addr, 8);
    puts(" want=");
    puthex(want, 8);
    puts(" got=");
    puthex(got, 8);
    putc('\n');
}

static u32 pass_base(u32 pass)
{
    /* top bit set, so base ^ index (index < 2^31) is never zero */
    return mix32(boot_lo ^ (pass * 0x9E3779B1U)) | 0x80000000U;
}

static u32 stamp_val(u32 i)
{
    return mix32(boot_hi ^ (i * 0x85EBCA77U)) | 1;
}

/* Write n words of the dirty region, verifying the previous pass first. */
static void dirty_words_step(u32 n)
{
    /* positions are kept in registers for the step and stored once at its
     * end: an invlpg per word would be 10 million TLB flushes a second */
    u32 i = st.dirty_pos, pass = st.dirty_pass, val = st.dirty_base_val;
    while (n--) {
        if (i == 0)
            val = pass_base(pass);
        if (tlb_flush && (i & 1023) == 0)   /* new page: re-arm its dirty trap */
            __asm__ volatile("invlpg (%0)" : : "r"(&dirty_base[i]) : "memory");
        if (pass) {
            u32 want = pass_base(pass - 1) ^ i;
            if (dirty_base[i] != want)
                corrupt(&dirty_base[i], want, dirty_base[i]);
        }
        dirty_base[i] = val ^ i;
        if (++i == dirty_words) {
            i = 0;
            pass++;
        }
    }
    state_arm();
    st.dirty_pos = i;
    st.dirty_pass = pass;
    st.dirty_base_val = val;
}

static void verify_words_step(u32 n)
{
    u32 i = st.verify_pos;
    while (n-- && stamp_words) {
        u32 want = stamp_val(i);
        if (stamp_base[i] != want)
            corrupt(&stamp_base[i], want, stamp_base[i]);
        if (++i == stamp_words)
            i = 0;
    }
    ST_SET(verify_pos, i);
}

/* ---- legacy IDE PIO (primary master) ---- */
static int ide_wait(int want_drq)
{
    u32 spins = 0;
    for (;;) {
        u8 s = inb(0x1F7);
        if (s == 0xFF)
            return -1;              /* floating bus: no controller/drive */
        if (!(s & 0x80)) {
            if (s & 0x01)
                return -2;          /* ERR */
            if (!want_drq || (s & 0x08))
                return 0;
        }
        if (++spins > 50000000U)
            return -3;
    }
}

static u32 fnv1a(u32 h, const u8 *p, u32 n)
{
    while (n--) {
        h ^= *p++;
        h *= 16777619U;
    }
    return h;
}

static void disk_write(u32 lba, u32 sectors)
{
    static u8 sec[512];
    u32 sum = 2166136261U;
    u32 s, j;
    int rc;

    outb(0x3F6, 0x02);              /* nIEN: we poll, no IRQ14 */
    outb(0x1F6, (u8)(0xE0 | ((lba >> 24) & 0x0F)));
    rc = ide_wait(0);
    if (rc == 0) {
        outb(0x1F2, (u8)sectors);
        outb(0x1F3, (u8)lba);
        outb(0x1F4, (u8)(lba >> 8));
        outb(0x1F5, (u8)(lba >> 16));
        outb(0x1F7, 0x30);          /* WRITE SECTORS */
    }
    for (s = 0; rc == 0 && s < sectors; s++) {
        const char *hdr = "MPDISK boot=";
        u32 k = 0;
        for (j = 0; hdr[j]; j++)
            sec[k++] = (u8)hdr[j];
        for (j = 0; j < 16; j++) {
            u32 nib = (j < 8 ? boot_hi >> ((7 - j) * 4) : boot_lo >> ((15 - j) * 4)) & 0xF;
            sec[k++] = (u8)"0123456789abcdef"[nib];
        }
        sec[k++] = ' ';
        for (j = k; j < 512; j++)
            sec[j] = (u8)(mix32(boot_lo ^ ((lba + s) << 9) ^ j) | 1);
        sum = fnv1a(sum, sec, 512);
        rc = ide_wait(1);
        if (rc)
            break;
        for (j = 0; j < 512; j += 2)
            outw(0x1F0, (u16)(sec[j] | (sec[j + 1] << 8)));
    }
    if (rc == 0)
        rc = ide_wait(0);
    if (rc == 0) {
        outb(0x1F7, 0xE7);          /* FLUSH CACHE */
        rc = ide_wait(0);
    }
    if (rc) {
        puts("MPDISK error=");
        putdec((u32)-rc);
        putc('\n');
        return;
    }
    puts("MPDISK sum=");
    puthex(sum, 8);
    puts(" lba=");
    putdec(lba);
    puts(" sectors=");
    putdec(sectors);
    putc('\n');
}

/* ---- main ---- */
struct mb_info {
    u32 flags, mem_lower, mem_upper, boot_device, cmdline;
};

void kmain(u32 magic, struct mb_info *mbi)
{
    u32 mem_kib = 0, top, tick_ms, dirty_mib, rate, stamp_mib, verify_rate;
    u64 boot;

    serial_init();
    if (magic == 0x2BADB002) {
        if (mbi->flags & 0x4)
            cmdline = (const char *)mbi->cmdline;
        if (mbi->flags & 0x1)
            mem_kib = mbi->mem_upper + 1024;
    }
    interrupts_init();
    boot = make_boot_id();
    boot_hi = (u32)(boot >> 32);
    boot_lo = (u32)boot;

    tick_ms = arg_u32("tick_ms", 100);
    if (!tick_ms)
        tick_ms = 100;
    dirty_mib = arg_u32("dirty_mib", 0);
    rate = arg_u32("rate_mib_s", 0);
    if (rate > 4000)
        rate = 4000;                /* keeps rate * 2^20 in 32 bits */
    stamp_mib = arg_u32("stamp_mib", 0);
    verify_rate = arg_u32("verify_mib_s", 8);
    tlb_flush = arg_u32("tlb_flush", 1);
    if (verify_rate > 4000)
        verify_rate = 4000;

    /* Fit both regions between REGION_BASE and the top of RAM. */
    top = mem_kib ? mem_kib * 1024U : 64U * MIB;
    if ((u32)__kernel_end > REGION_BASE || top < REGION_BASE + MIB) {
        puts("MPWARN no room for regions\n");
        dirty_mib = stamp_mib = 0;
    } else {
        u32 room = (top - REGION_BASE) / MIB - 1;   /* keep 1 MiB spare */
        if (dirty_mib > room)
            dirty_mib = room;
        if (stamp_mib > room - dirty_mib)
            stamp_mib = room - dirty_mib;
    }
    dirty_base = (u32 *)REGION_BASE;
    dirty_words = dirty_mib * (MIB / 4);
    stamp_base = (u32 *)(REGION_BASE + dirty_mib * MIB);
    stamp_words = stamp_mib * (MIB / 4);
    if (!rate)
        dirty_words = 0;

    puts("MPBOOT boot=");
    puthex64(boot);
    puts(" mem_kib=");
    putdec(mem_kib);
    puts(" tick_ms=");
    putdec(tick_ms);
    puts(" dirty_mib=");
    putdec(dirty_words ? dirty_mib : 0);
    puts(" rate_mib_s=");
    putdec(rate);
    puts(" stamp_mib=");
    putdec(stamp_mib);
    puts(" tlb_flush=");
    putdec(tlb_flush);
    putc('\n');

    if (stamp_words) {
        u32 i, sum = 0;
        for (i = 0; i < stamp_words; i++) {
            u32 v = stamp_val(i);
            stamp_base[i] = v;
            sum += v;
        }
        puts("MPSTAMPED mib=");
        putdec(stamp_mib);
        puts(" sum=");
        puthex(sum, 8);
        putc('\n');
    }

    if (arg_u32("disk_write", 0)) {
        u32 sectors = arg_u32("disk_sectors", 4);
        if (sectors < 1 || sectors > 255)
            sectors = 4;
        disk_write(arg_u32("disk_lba", 1), sectors);
    }

    /* From here on, every value carried across loop iterations lives in
     * st and is written with ST_SET only. */
    __asm__ volatile("sti");
    ST_SET(last_ms, now_ms());
    ST_SET(next_tick, st.last_ms + tick_ms);
    for (;;) {
        u32 now, elapsed;
        __asm__ volatile("sti; hlt");
        if (tlb_flush)
            flush_tlb();
        now = now_ms();
        elapsed = now - st.last_ms;
        ST_SET(last_ms, now);
        if (elapsed > 50)
            elapsed = 50;           /* after a long stop, do not burst */
        /* words per ms = rate * 2^18 / 1000; one ms at a time keeps the
         * product in 32 bits, the remainder is carried */
        while (elapsed--) {
            if (dirty_words) {
                u32 acc = st.dirty_acc + rate * (MIB / 4);
                ST_SET(dirty_acc, acc % 1000);
                dirty_words_step(acc / 1000);
            }
            if (stamp_words && verify_rate) {
                u32 acc = st.verify_acc + verify_rate * (MIB / 4);
                ST_SET(verify_acc, acc % 1000);
                verify_words_step(acc / 1000);
            }
        }
        if ((int)(now - st.next_tick) >= 0) {
            u32 n = st.n;
            ST_SET(n, n + 1);
            puts("MPTICK boot=");
            puthex64(boot);
            puts(" n=");
            putdec(n);
            puts(" ms=");
            putdec(now);
            puts(" pass=");
            putdec(st.dirty_pass);
            puts(" bad=");
            putdec(st.bad);
            puts(" pos=");
            putdec(st.dirty_pos);
            putc('\n');
            ST_SET(next_tick, st.next_tick + tick_ms);
            if ((int)(now - st.next_tick) >= 0)
                ST_SET(next_tick, now + tick_ms);
        }
    }
}
