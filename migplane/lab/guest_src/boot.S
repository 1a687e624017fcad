/* Multiboot (v1) entry for the migplane test guest: own GDT, stack, IRQ stubs.
 * QEMU loads this 32-bit ELF with -kernel; paging stays off (flat physical). */
        .set MB_MAGIC, 0x1BADB002
        .set MB_FLAGS, 0x00000003      /* page-align modules, want memory info */

        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)

        .section .text
        .global _start
_start:
        cli
        mov     $stack_top, %esp
        mov     %eax, %esi              /* multiboot magic */
        mov     %ebx, %edi              /* multiboot info */
        lgdt    gdt_desc                /* the loader's GDT is not guaranteed valid */
        ljmp    $0x08, $1f
1:      mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %fs
        mov     %ax, %gs
        mov     %ax, %ss
        /* zero .bss (stack included: it is not in use yet beyond this point) */
        cld
        mov     $__bss_start, %edx
        mov     %edi, %ebp
        mov     %edx, %edi
        mov     $__bss_end, %ecx
        sub     %edx, %ecx
        xor     %eax, %eax
        rep stosb
        mov     %ebp, %edi
        mov     $stack_top, %esp
        push    %edi
        push    %esi
        call    kmain
2:      cli
        hlt
        jmp     2b

        .global irq0_stub
irq0_stub:
        pusha
        cld
        call    irq0_handler
        popa
        iret

        .global ignore_stub
ignore_stub:
        iret

        .global fault_stub
fault_stub:
        cld
        call    fault_handler
3:      cli
        hlt
        jmp     3b

        .section .rodata
        .align 8
gdt:
        .quad   0
        .quad   0x00CF9A000000FFFF      /* 0x08: code, flat 4 GiB */
        .quad   0x00CF92000000FFFF      /* 0x10: data, flat 4 GiB */
gdt_end:
gdt_desc:
        .word   gdt_end - gdt - 1
        .long   gdt

        .section .bss
        .align 16
stack_bottom:
        .skip   16384
stack_top:
        .section .note.GNU-stack,"",@progbits
