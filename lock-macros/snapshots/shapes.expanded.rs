async fn call_partner(order: u64) -> Result<(), LockError> {
    let __lock_names: [::std::string::String; 1] = [::std::format!("partner-api")];
    let __lock_client: ::core::option::Option<::lock_runtime::__private::LockClient> = ::core::option::Option::None;
    let __lock_options: ::lock_runtime::__private::LockOptions = ::lock_runtime::__private::options(
            ::lock_runtime::__private::Duration::from_millis(30000u64),
        )
        .fair(true)
        .permits(4u32);
    ::lock_runtime::__private::run_async(
            __lock_client,
            &__lock_names,
            &__lock_options,
            ::lock_runtime::__private::LockedReturn::from_lock_error,
            move |_: ::lock_runtime::__private::LockHandle| async move {
                #[allow(
                    unreachable_code,
                    clippy::diverging_sub_expression,
                    clippy::empty_loop,
                    clippy::let_unit_value,
                    clippy::let_with_type_underscore,
                    clippy::needless_return,
                    clippy::unreachable
                )]
                if false {
                    let __lock_fake_return: Result<(), LockError> = loop {};
                    return __lock_fake_return;
                }
                send(order).await
            },
        )
        .await
}
