-- Messages per mailbox in one month exchanged with official, public and other domains
-- (a message with both an official and a public recipient counts in both), and how many
-- distinct public addresses. Input: counterpart_addresses (counterpart_addresses.sql).
with

final as (
    select
        mailbox,
        count(distinct (folder, uidvalidity, uid)) filter (where domain_class = 'official')
            as msgs_official,
        count(distinct (folder, uidvalidity, uid)) filter (where domain_class = 'public')
            as msgs_public,
        count(distinct (folder, uidvalidity, uid)) filter (where domain_class = 'other')
            as msgs_other,
        count(distinct address) filter (where domain_class = 'public') as public_addresses
    from counterpart_addresses
    group by mailbox
)

select * from final
order by mailbox
