async fn post(state: &AppState, account: u64) -> Result<impl Display, AppError> {
    let __lock_names: [::std::string::String; 1] = [::std::format!("ledger:{account}")];
    let __lock_client: ::core::option::Option<my_app::locks::__private::LockClient> = ::core::option::Option::Some(
        my_app::locks::__private::client(&(state.locks)),
    );
    let __lock_options: my_app::locks::__private::LockOptions = my_app::locks::__private::options(
            my_app::locks::__private::Duration::from_millis(30000u64),
        )
        .wait(
            my_app::locks::__private::Wait::For(
                my_app::locks::__private::Duration::from_millis(5000u64),
            ),
        )
        .heartbeat(my_app::locks::__private::Duration::from_millis(10000u64))
        .fencing(true)
        .fair(true)
        .reentrant(true)
        .max_hold(my_app::locks::__private::Duration::from_millis(600000u64))
        .min_hold(my_app::locks::__private::Duration::from_millis(1000u64))
        .on_lost(my_app::locks::__private::OnLost::Notify);
    my_app::locks::__private::run_async(
            __lock_client,
            &__lock_names,
            &__lock_options,
            my_app::locks::__private::LockedReturn::from_lock_error,
            move |lock: my_app::locks::__private::LockHandle| async move {
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
                    let __lock_fake_return: Result<_, AppError> = loop {};
                    return __lock_fake_return;
                }
                state.ledger.write(account, lock.fencing_token()).await?;
                Ok(account)
            },
        )
        .await
}
